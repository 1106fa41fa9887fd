package scenarios

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// kernelSeries picks the kernels of scenario 10: the oldest and newest 6.1 builds and the
// newest 6.12 build the archive serves (an ordered series, also bisect's demo).
func kernelSeries(t *testing.T) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all, err := images.KernelSeries(ctx)
	require.NoError(t, err, "listing Debian kernel packages (apt-get update needed?)")
	var v61, v612 []string
	for _, p := range all {
		switch {
		case strings.HasPrefix(p, "linux-image-6.1.0-"):
			v61 = append(v61, p)
		case strings.HasPrefix(p, "linux-image-6.12."):
			v612 = append(v612, p)
		}
	}
	require.GreaterOrEqual(t, len(v61), 2, "the archive serves at least two 6.1 kernels: %v", all)
	require.NotEmpty(t, v612, "the archive serves a 6.12 kernel: %v", all)
	return []string{v61[0], v61[len(v61)-1], v612[len(v612)-1]}
}

// Scenario 10: the mini image booted with each Debian kernel build reaches a verified
// root shell and reports its uname -r. With -kernel only that kernel is booted.
func TestUpstreamKernelSeries(t *testing.T) {
	slot(t)
	if *flagKernel != "" {
		img := vm.Image{Name: "kernel", Kernel: *flagKernel, Initrd: *flagInitrd, Append: *flagAppend, Profile: shell.Mini, Poweroff: "poweroff -f"}
		bootKernel(t, "kernel", img, "")
		return
	}
	for _, pkg := range kernelSeries(t) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		img, m, err := lab.MiniImage(ctx, images.MiniSpec{KernelPackage: pkg})
		cancel()
		require.NoError(t, err, "building the mini image with %s", pkg)
		bootKernel(t, "kernel-"+m.KernelVersion, img, m.KernelVersion)
	}
}

func bootKernel(t *testing.T, slug string, img vm.Image, wantRelease string) {
	t.Helper()
	l := labtest.StartT(t, labtest.Image(img), labtest.Memory(256), labtest.Slug(slug),
		labtest.Login())
	rel := strings.TrimSpace(run(t, l, "uname -r"))
	t.Logf("%s: uname -r = %s", slug, rel)
	if wantRelease != "" {
		require.Equal(t, wantRelease, rel)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	_, err := l.PowerOff(ctx)
	require.NoError(t, err)
}
