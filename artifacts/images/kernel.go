package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/bootlab/bootlab/artifacts/cacheprune"
)

// virtioModules are loaded into the mini image so tests can attach virtio disks, NICs
// and an RNG; their dependencies are worked out from each module's .modinfo.
var virtioModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "virtio_console"}

// Kernel is a Debian kernel package unpacked for direct boot: the bzImage plus the few
// modules the mini image loads, decompressed, in dependency order.
type Kernel struct {
	Package string
	Version string // the package version, e.g. 6.1.192-2
	Release string // uname -r, e.g. 6.1.0-56-amd64
	Vmlinuz string
	// Modules are absolute paths of .ko files in load order.
	Modules []string
	DebSHA  string
}

// defaultKernelPackage is the real package the linux-image-amd64 metapackage points at.
func (c Cache) defaultKernelPackage(ctx context.Context) (string, error) {
	d, err := c.resolveDeb(ctx, "linux-image-amd64")
	if err != nil {
		return "", err
	}
	dep, _, _ := strings.Cut(d.Depends, ",")
	dep, _, _ = strings.Cut(strings.TrimSpace(dep), " ")
	if !strings.HasPrefix(dep, "linux-image-") {
		return "", fmt.Errorf("linux-image-amd64 depends on %q, not a linux-image package", d.Depends)
	}
	return dep, nil
}

// FetchKernel downloads and unpacks a Debian kernel package (default: the one
// linux-image-amd64 depends on), cached by the .deb's SHA256.
func (c Cache) FetchKernel(ctx context.Context, pkg string) (*Kernel, error) {
	if pkg == "" {
		var err error
		if pkg, err = c.defaultKernelPackage(ctx); err != nil {
			return nil, err
		}
	}
	d, err := c.resolveDeb(ctx, pkg)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.dir(), "kernels", cleanName(pkg)+"-"+d.SHA256[:16])
	err = cached(ctx, dir, func(ctx context.Context, tmp string) error {
		deb, _, err := c.fetchDeb(ctx, pkg)
		if err != nil {
			return err
		}
		slog.Info("unpacking kernel", "package", pkg)
		return unpackKernel(ctx, deb, tmp)
	})
	if err != nil {
		return nil, fmt.Errorf("preparing kernel %s: %w", pkg, err)
	}
	cacheprune.Touch(dir) // the recent-use mark bootlab cache prune keeps by
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return nil, fmt.Errorf("reading kernel release: %w", err)
	}
	order, err := os.ReadFile(filepath.Join(dir, "modules", "order"))
	if err != nil {
		return nil, fmt.Errorf("reading module order: %w", err)
	}
	k := &Kernel{Package: pkg, Version: d.Version, Release: strings.TrimSpace(string(rel)),
		Vmlinuz: filepath.Join(dir, "vmlinuz"), DebSHA: d.SHA256}
	for _, m := range strings.Fields(string(order)) {
		k.Modules = append(k.Modules, filepath.Join(dir, "modules", m))
	}
	return k, nil
}

// unpackKernel streams the package's filesystem tar (dpkg-deb --fsys-tarfile) and keeps
// only vmlinuz and the modules we load: unpacking all ~400 MB of modules with
// dpkg-deb -x would cost seconds per kernel for nothing.
func unpackKernel(ctx context.Context, deb, out string) error {
	if err := needTools("dpkg-deb"); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("running dpkg-deb: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running dpkg-deb: %w", err)
	}
	mods := map[string][]byte{} // module name -> uncompressed .ko
	builtin := map[string]bool{}
	release := ""
	tr := tar.NewReader(pipe)
	var readErr error
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = fmt.Errorf("reading %s: %w", filepath.Base(deb), err)
			break
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case strings.HasPrefix(name, "boot/vmlinuz-") && h.Typeflag == tar.TypeReg:
			release = strings.TrimPrefix(name, "boot/vmlinuz-")
			readErr = copyToFile(filepath.Join(out, "vmlinuz"), tr, 0o644)
		case strings.HasSuffix(name, "/modules.builtin") && h.Typeflag == tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				readErr = err
				break
			}
			for _, l := range strings.Fields(string(b)) {
				builtin[modName(l)] = true
			}
		case strings.Contains(name, "/kernel/") && h.Typeflag == tar.TypeReg && wantedCandidate(modName(name)):
			b, err := io.ReadAll(tr)
			if err != nil {
				readErr = err
				break
			}
			if b, err = decompressModule(name, b); err != nil {
				readErr = err
				break
			}
			mods[modName(name)] = b
		}
		if readErr != nil {
			break
		}
	}
	if readErr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return readErr
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, stderr.String())
	}
	if release == "" {
		return fmt.Errorf("%s holds no boot/vmlinuz-*: not a kernel image package", filepath.Base(deb))
	}
	order, err := moduleOrder(virtioModules, mods, builtin)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", release, err)
	}
	if err := os.MkdirAll(filepath.Join(out, "modules"), 0o755); err != nil {
		return err
	}
	for _, m := range order {
		if err := os.WriteFile(filepath.Join(out, "modules", m+".ko"), mods[m], 0o644); err != nil {
			return fmt.Errorf("writing module %s: %w", m, err)
		}
	}
	var lines []string
	for _, m := range order {
		lines = append(lines, m+".ko")
	}
	if err := os.WriteFile(filepath.Join(out, "modules", "order"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "release"), []byte(release+"\n"), 0o644)
}

func copyToFile(path string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// modName turns a module path into the kernel's module name (dashes become underscores).
func modName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// wantedCandidate keeps the tar pass cheap: only modules that can be in the virtio
// closure are read into memory; moduleOrder fails loudly if a dependency is not here.
func wantedCandidate(name string) bool {
	return strings.HasPrefix(name, "virtio") || strings.Contains(name, "failover") || name == "rng_core"
}

func decompressModule(name string, b []byte) ([]byte, error) {
	switch {
	case strings.HasSuffix(name, ".xz"):
		r, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", name, err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", name, err)
		}
		return out, nil
	case strings.HasSuffix(name, ".zst"):
		d, err := zstd.NewReader(nil)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		out, err := d.DecodeAll(b, nil)
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", name, err)
		}
		return out, nil
	}
	return b, nil
}

// moduleDepends reads "depends=" from a module's .modinfo ELF section.
func moduleDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("parsing module ELF: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("module has no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo: %w", err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, strings.ReplaceAll(d, "-", "_"))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// moduleOrder returns the wanted modules plus their dependencies, dependencies first.
// Built-in ones are dropped: whether virtio_pci is a module differs between kernel
// series, and the series is exactly what bisection varies.
func moduleOrder(wanted []string, mods map[string][]byte, builtin map[string]bool) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(m string) error {
		switch state[m] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", m)
		case 2:
			return nil
		}
		ko, ok := mods[m]
		if !ok {
			if builtin[m] {
				state[m] = 2
				return nil
			}
			return fmt.Errorf("module %s is neither built in nor among the unpacked modules", m)
		}
		state[m] = 1
		deps, err := moduleDepends(ko)
		if err != nil {
			return fmt.Errorf("module %s: %w", m, err)
		}
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[m] = 2
		order = append(order, m)
		return nil
	}
	for _, m := range wanted {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return order, nil
}
