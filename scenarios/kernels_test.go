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

// Scenario 10: the mini image booted with each Debian kernel build reaches a verified
// root shell and reports its uname -r. With -kernel only that kernel is booted.
func TestUpstreamKernelSeries(t *testing.T) {
	labtest.Slot(t, 170*time.Second)
	if *flagKernel != "" {
		img := vm.Image{Name: "kernel", Kernel: *flagKernel, Initrd: *flagInitrd, Append: *flagAppend, Profile: shell.Mini, Poweroff: "poweroff -f"}
		bootKernel(t, "kernel", img, "")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	series, err := lab.KernelSeries(ctx)
	cancel()
	require.NoError(t, err, "picking the kernel series")
	for _, pkg := range series {
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
