package labtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"github.com/bootlab/bootlab/harness/shell"
)

// Kernel is one Debian kernel build on the mini image: what boots, and the release
// `uname -r` must print ("" when unknown: a kernel given by hand).
type Kernel struct {
	Release string
	Image   lab.Image
}

// KernelSeries builds (or finds in the cache) the mini image with each kernel of the
// kernel series (images.KernelSeriesSample: the oldest and newest 6.1 builds and the newest
// 6.12 the archive serves).
func KernelSeries(t testing.TB) []Kernel {
	t.Helper()
	vmgate.Gate(t) // it downloads and builds before any boot
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	series, err := images.KernelSeriesSample(ctx)
	cancel()
	require.NoError(t, err, "picking the kernel series")
	var ks []Kernel
	for _, pkg := range series {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		img, m, err := lab.MiniImage(ctx, Cache(), images.MiniSpec{KernelPackage: pkg})
		cancel()
		require.NoError(t, err, "building the mini image with %s", pkg)
		ks = append(ks, Kernel{Release: m.KernelVersion, Image: img})
	}
	return ks
}

// KernelImage is a kernel and initrd given by hand, booted with the mini image's
// profile (a busybox shell, poweroff -f).
func KernelImage(kernel, initrd, cmdline string) Kernel {
	return Kernel{Image: lab.Image{Name: "kernel", Kernel: kernel, Initrd: initrd, Append: cmdline, Profile: shell.Mini, Poweroff: "poweroff -f"}}
}
