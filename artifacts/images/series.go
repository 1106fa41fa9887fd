package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/debversion"
)

// kernelPkgRE matches real Debian kernel image packages for the generic amd64 flavour:
// linux-image-6.1.0-47-amd64 and linux-image-6.12.111+deb12-amd64, not the metapackages
// (linux-image-amd64, linux-image-6.12-amd64) nor -cloud-/-rt- flavours.
var kernelPkgRE = regexp.MustCompile(`^linux-image-([0-9]+\.[0-9]+\.[0-9]+(?:-[0-9]+|\+deb[0-9]+))-amd64$`)

// KernelSeries lists the linux-image-<release>-amd64 packages apt can install, oldest
// first by Debian version order: the real ordered series the mini image is booted with
// as an upstream baseline and that bisection is demonstrated on.
func KernelSeries(ctx context.Context) ([]string, error) {
	if err := needTools("apt-cache"); err != nil {
		return nil, err
	}
	out, err := run(ctx, "", "apt-cache", "search", "--names-only", `^linux-image-[0-9].*-amd64$`)
	if err != nil {
		return nil, fmt.Errorf("listing Debian kernel packages: %w", err)
	}
	return parseKernelSeries(string(out)), nil
}

func parseKernelSeries(aptSearch string) []string {
	var names []string
	seen := map[string]bool{}
	for _, line := range strings.Split(aptSearch, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if kernelPkgRE.MatchString(name) && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		a := kernelPkgRE.FindStringSubmatch(names[i])[1]
		b := kernelPkgRE.FindStringSubmatch(names[j])[1]
		return CompareDebianVersions(a, b) < 0
	})
	return names
}

// CompareDebianVersions orders two Debian version strings like dpkg --compare-versions.
func CompareDebianVersions(a, b string) int { return debversion.Compare(a, b) }

// Netboot is Debian's installer netboot kernel and initrd (text frontend).
type Netboot struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Version string `json:"version"`
	Dir     string `json:"dir"`
}

const netbootPackage = "debian-installer-12-netboot-amd64"

// DebianInstallerNetboot returns the text-frontend installer kernel+initrd from the
// debian-installer-12-netboot-amd64 package, cached by the package's SHA256.
func (c Cache) DebianInstallerNetboot(ctx context.Context) (*Netboot, error) {
	d, err := c.resolveDeb(ctx, netbootPackage)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.dir(), "netboot", cleanName(d.Version)+"-"+d.SHA256[:16])
	err = cached(ctx, dir, func(ctx context.Context, tmp string) error {
		deb, _, err := c.fetchDeb(ctx, netbootPackage)
		if err != nil {
			return err
		}
		slog.Info("unpacking installer netboot", "version", d.Version)
		const prefix = "usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/"
		return extractMembers(ctx, deb, map[string]string{
			prefix + "linux":     filepath.Join(tmp, "linux"),
			prefix + "initrd.gz": filepath.Join(tmp, "initrd.gz"),
		})
	})
	if err != nil {
		return nil, fmt.Errorf("preparing the Debian installer netboot image: %w", err)
	}
	return &Netboot{Kernel: filepath.Join(dir, "linux"), Initrd: filepath.Join(dir, "initrd.gz"), Version: d.Version, Dir: dir}, nil
}

// extractMembers copies the named members (paths without "./") of a .deb's filesystem
// to the given files, failing if any is absent.
func extractMembers(ctx context.Context, deb string, want map[string]string) error {
	if err := needTools("dpkg-deb"); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// dpkg-deb forks its decompressor, which outlives a killed dpkg-deb, blocks writing
	// into the pipe nobody reads any more and keeps stderr open: without a bound, Wait
	// waits for that stderr forever (seen with virtio_blk.ko from a 70 MB kernel deb).
	cmd.WaitDelay = 2 * time.Second
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("running dpkg-deb: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running dpkg-deb: %w", err)
	}
	found := map[string]bool{}
	tr := tar.NewReader(pipe)
	for len(found) < len(want) {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("reading %s: %w", filepath.Base(deb), err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if dst, ok := want[name]; ok && h.Typeflag == tar.TypeReg {
			if err := copyToFile(dst, tr, 0o644); err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				return err
			}
			found[name] = true
		}
	}
	if len(found) == len(want) {
		// Everything needed is read; the rest of the archive is not worth decompressing,
		// so dpkg-deb is stopped and its "killed" status is expected.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", filepath.Base(deb), err, stderr.String())
	}
	for name := range want {
		if !found[name] {
			return fmt.Errorf("%s has no %s", filepath.Base(deb), name)
		}
	}
	return nil
}

// KernelSeriesSample picks the kernels of the kernel-series scenario: the oldest and newest
// 6.1 builds and the newest 6.12 build the archive serves (an ordered series, also
// bisect's demo).
func KernelSeriesSample(ctx context.Context) ([]string, error) {
	all, err := KernelSeries(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing Debian kernel packages (apt-get update needed?): %w", err)
	}
	var v61, v612 []string
	for _, p := range all {
		switch {
		case strings.HasPrefix(p, "linux-image-6.1.0-"):
			v61 = append(v61, p)
		case strings.HasPrefix(p, "linux-image-6.12."):
			v612 = append(v612, p)
		}
	}
	if len(v61) < 2 || len(v612) == 0 {
		return nil, fmt.Errorf("the archive serves %d 6.1 and %d 6.12 kernels, want at least two and one: %v", len(v61), len(v612), all)
	}
	return []string{v61[0], v61[len(v61)-1], v612[len(v612)-1]}, nil
}
