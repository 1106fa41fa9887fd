package images

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/cacheprune"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
)

// InstallerISOSpec is one ISO laid out like Debian's mini.iso: the text netboot tree of
// debian-installer-12-netboot-amd64 at the root, its ISOLINUX and GRUB menus and its
// installer initrd unchanged, and a kernel.
type InstallerISOSpec struct {
	// Name is the ISO's file name without .iso (and what a bisection calls it).
	Name string
	// KernelPackage, when set, replaces the installer's kernel
	// (debian-installer/amd64/linux) with the vmlinuz of this linux-image package from
	// the archive; the initrd, with its modules for the installer's own kernel, stays as
	// shipped. Empty keeps the kernel the netboot package ships.
	KernelPackage string
}

// InstallerISO is a built installer ISO.
type InstallerISO struct {
	Name string
	Path string
	// KernelRelease is the release (uname -r) of the kernel on the ISO, read from its
	// header; InstallerRelease is the one the initrd's modules are for (the netboot
	// package's own kernel).
	KernelRelease, InstallerRelease string
	// KernelPackage is the spec's (empty: the netboot package's kernel).
	KernelPackage string
	// Netboot is the netboot package's version.
	Netboot string
}

// installerISODate is every date on the ISO (volume and file dates): the build is then
// reproducible, the same inputs giving the same bytes on any machine and at any time.
var installerISODate = time.Date(2023, 6, 7, 0, 0, 0, 0, time.UTC)

// installerISOHostFiles are the host's ISOLINUX binaries: isolinux.bin must match the
// COM32 modules it loads, so the package's copies of these are replaced by the host's.
var installerISOHostFiles = map[string]string{
	"isolinux.bin": "/usr/lib/ISOLINUX/isolinux.bin",
	"ldlinux.c32":  "/usr/lib/syslinux/modules/bios/ldlinux.c32",
	"debian-installer/amd64/boot-screens/ldlinux.c32":  "/usr/lib/syslinux/modules/bios/ldlinux.c32",
	"debian-installer/amd64/boot-screens/libcom32.c32": "/usr/lib/syslinux/modules/bios/libcom32.c32",
	"debian-installer/amd64/boot-screens/libutil.c32":  "/usr/lib/syslinux/modules/bios/libutil.c32",
	"debian-installer/amd64/boot-screens/vesamenu.c32": "/usr/lib/syslinux/modules/bios/vesamenu.c32",
}

// BuildInstallerISO builds (or finds in the image cache, under installer-isos/) an ISO
// laid out like Debian's mini.iso from the netboot package: the package's text netboot
// tree at the root with its menu files unchanged (the package's pxelinux.cfg/default,
// boot-screens/syslinux.cfg, is the isolinux.cfg; its GRUB config is
// /boot/grub/grub.cfg), and the kernel spec names. The cache key is the netboot and
// kernel packages' SHA256s and the host's ISOLINUX files; every date on the ISO is fixed,
// so the same key always gives the same bytes.
func (c Cache) BuildInstallerISO(ctx context.Context, spec InstallerISOSpec) (*InstallerISO, error) {
	if spec.Name == "" || cleanName(spec.Name) != spec.Name {
		return nil, fmt.Errorf("installer ISO name %q: want letters, digits and . - _ + only", spec.Name)
	}
	if err := needTools("xorriso"); err != nil {
		return nil, err
	}
	tree, err := c.DebianInstallerNetbootTree(ctx)
	if err != nil {
		return nil, err
	}
	nb, err := c.resolveDeb(ctx, netbootPackage)
	if err != nil {
		return nil, err
	}
	kernel := filepath.Join(tree, "debian-installer/amd64/linux")
	h, sum := newHasher("installer-iso-v1")
	h.add("name", spec.Name)
	h.add("netboot", nb.SHA256)
	if spec.KernelPackage != "" {
		k, err := c.FetchKernel(ctx, spec.KernelPackage)
		if err != nil {
			return nil, err
		}
		kernel = k.Vmlinuz
		h.add("kernel", k.DebSHA)
	}
	for _, dst := range slices.Sorted(maps.Keys(installerISOHostFiles)) {
		s, err := fileSHA256(installerISOHostFiles[dst])
		if err != nil {
			return nil, fmt.Errorf("the host's ISOLINUX files (apt-get install isolinux syslinux-common): %w", err)
		}
		h.add(dst, s)
	}
	dir := filepath.Join(c.dir(), "installer-isos", spec.Name+"-"+shortHash(sum()))
	iso := filepath.Join(dir, spec.Name+".iso")
	err = cached(ctx, dir, func(ctx context.Context, tmp string) error {
		return buildInstallerISO(ctx, tree, kernel, filepath.Join(tmp, spec.Name+".iso"), tmp)
	})
	if err != nil {
		return nil, fmt.Errorf("building installer ISO %s: %w", spec.Name, err)
	}
	cacheprune.Touch(dir) // the recent-use mark bootlab cache prune keeps by
	out := &InstallerISO{Name: spec.Name, Path: iso, KernelPackage: spec.KernelPackage, Netboot: nb.Version}
	if out.KernelRelease, err = kernelRelease(kernel); err != nil {
		return nil, err
	}
	if out.InstallerRelease, err = kernelRelease(filepath.Join(tree, "debian-installer/amd64/linux")); err != nil {
		return nil, err
	}
	return out, nil
}

func kernelRelease(kernel string) (string, error) {
	v, err := isoinspect.KernelVersion(kernel)
	if err != nil {
		return "", fmt.Errorf("reading the release of %s: %w", kernel, err)
	}
	f := strings.Fields(v)
	if len(f) == 0 {
		return "", fmt.Errorf("%s: empty kernel version", kernel)
	}
	return f[0], nil
}

// buildInstallerISO stages the tree in work (hard links where it can: the tree is
// ~55 MB and never written through them) and writes iso with xorriso.
func buildInstallerISO(ctx context.Context, tree, kernel, iso, work string) error {
	stage := filepath.Join(work, "stage")
	defer os.RemoveAll(stage)
	if out, err := exec.CommandContext(ctx, "cp", "-al", tree, stage).CombinedOutput(); err != nil {
		// Another file system: copy instead.
		_ = os.RemoveAll(stage)
		if out2, err2 := exec.CommandContext(ctx, "cp", "-a", tree, stage).CombinedOutput(); err2 != nil {
			return fmt.Errorf("staging the netboot tree: %w: %s %s", err2, out, out2)
		}
	}
	// A staged file is replaced, never written in place: it may be a link into the tree.
	place := func(dst, src string) error {
		p := filepath.Join(stage, filepath.FromSlash(dst))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		_ = os.Remove(p)
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("reading %s: %w", src, err)
		}
		return os.WriteFile(p, b, 0o644)
	}
	files := map[string]string{
		"isolinux.cfg":                 filepath.Join(tree, "debian-installer/amd64/boot-screens/syslinux.cfg"),
		"boot/grub/grub.cfg":           filepath.Join(tree, "debian-installer/amd64/grub/grub.cfg"),
		"debian-installer/amd64/linux": kernel,
	}
	for k, v := range installerISOHostFiles {
		files[k] = v
	}
	for _, dst := range slices.Sorted(maps.Keys(files)) {
		if err := place(dst, files[dst]); err != nil {
			return fmt.Errorf("staging %s: %w", dst, err)
		}
	}
	cmd := exec.CommandContext(ctx, "xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-V", "ISOIMAGE", "-J", "-R",
		"--set_all_file_dates", installerISODate.Format("2006010215040500"),
		"-b", "isolinux.bin", "-c", "boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", stage)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", installerISODate.Unix()))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("xorriso: %w: %s", err, out)
	}
	return nil
}
