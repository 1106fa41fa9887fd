package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/keys"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// RootKey is the key pair embedded in bootlab-built images, kept in the image cache
// (private half 0600, never in run directories).
func RootKey() (*keys.Pair, error) {
	return keys.LoadOrCreate(filepath.Join(images.CacheDir(), "keys"))
}

// ProbeCache is where the accelerator probe's verdict is kept.
func ProbeCache() string { return filepath.Join(images.CacheDir(), "accel-probe.json") }

// MiniImage builds (or reuses) a mini image and describes it for a VM.
func MiniImage(ctx context.Context, spec images.MiniSpec) (vm.Image, *images.Mini, error) {
	m, err := images.BuildMini(ctx, spec)
	if err != nil {
		return vm.Image{}, nil, fmt.Errorf("building the mini image: %w", err)
	}
	return vm.Image{
		Name: "mini", Kernel: m.Kernel, Initrd: m.Initrd,
		Append:  "console=ttyS0,115200 panic=-1 " + m.Append,
		Profile: shell.Mini,
	}, m, nil
}

// FixtureImage builds (or reuses) the fixture ISO with bootlab's root key and describes
// it for a VM. spec.RootKey is filled in when empty.
func FixtureImage(ctx context.Context, spec images.FixtureSpec) (vm.Image, *images.ISO, *keys.Pair, error) {
	key, err := RootKey()
	if err != nil {
		return vm.Image{}, nil, nil, err
	}
	if spec.RootKey == "" && spec.RootKeyFile == "" {
		spec.RootKey = key.AuthorizedKey
	}
	iso, err := images.BuildFixtureISO(ctx, spec)
	if err != nil {
		return vm.Image{}, nil, nil, fmt.Errorf("building the fixture ISO: %w", err)
	}
	// Booted directly (QEMU -kernel/-initrd with the ISO's own kernel, initrd and
	// command line, the ISO attached as the CD-ROM live-boot mounts): measured 16 s
	// (20%) faster to a root shell than SeaBIOS + ISOLINUX under TCG, same run
	// (docs/benchmarks.md "Boot speed"). ResolveISOBoot's firmware path clears these
	// for `--boot firmware`. Entry is the label of its only ISOLINUX entry.
	return vm.Image{Name: "fixture", ISO: iso.Path, Kernel: iso.Kernel, Initrd: iso.Initrd, Append: iso.Append, Entry: "live", Profile: shell.Fixture}, iso, key, nil
}

// KernelSeries picks the kernels of the kernel-series scenario: the oldest and newest
// 6.1 builds and the newest 6.12 build the archive serves (an ordered series, also
// bisect's demo).
func KernelSeries(ctx context.Context) ([]string, error) {
	all, err := images.KernelSeries(ctx)
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
