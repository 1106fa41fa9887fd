package labtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/harness/dialog"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// StartInstaller boots Debian's own installer (netboot kernel and initrd, nothing built
// here) for t with the given disks, on its serial console, and returns the lab and the
// installer's kernel. A NIC so the installer has more than loopback; 1024 MB because
// below ~737 MiB it enters low-memory mode and its dialogs change; its own accelerator
// probe cache, because the cache holds one verdict per probe kernel.
func StartInstaller(ctx context.Context, t *testing.T, slug string, disks ...vm.DiskSpec) (*lab.Lab, string) {
	t.Helper()
	vmgate.VM(t)
	nb, err := images.DebianInstallerNetboot(ctx)
	require.NoError(t, err, "fetching the installer netboot kernel and initrd")
	l := StartT(t,
		Image(vm.Image{Name: "debian-installer-" + nb.Version, Kernel: nb.Kernel, Initrd: nb.Initrd,
			Append: dialog.DebianInstallerAppend, Profile: shell.DebianInstaller}),
		NIC(), Memory(1024), Disks(disks...), Slug(slug),
		Probe(nb.Kernel, filepath.Join(images.CacheDir(), "accel-probe-installer.json")))
	return l, nb.Kernel
}

// InstallerShell boots Debian's installer with blank virtio disks of the given sizes in
// MB, walks its dialogs to "Execute a shell" (the walk scenario 9 is about), takes that
// shell with the frame channel, and loads virtio_blk so the disks appear as vd*: the
// netboot initrd has no block drivers (disk-detect would download them, which an offline
// VM cannot). It is the baseline for tests about what runs inside the installer, not
// about reaching it.
func InstallerShell(ctx context.Context, t *testing.T, slug string, sizesMB ...int) (*lab.Lab, *shell.Shell) {
	t.Helper()
	var disks []vm.DiskSpec
	for i, mb := range sizesMB {
		disks = append(disks, vm.DiskSpec{Name: fmt.Sprintf("disk%d.img", i), SizeMB: mb})
	}
	l, kernel := StartInstaller(ctx, t, slug, disks...)
	kver, err := isoinspect.KernelVersion(kernel)
	require.NoError(t, err, "reading the version from the installer kernel's header")
	require.NotEmpty(t, strings.Fields(kver), "installer kernel header has an empty version")
	mod, err := images.DebianInstallerModule(ctx, strings.Fields(kver)[0], "drivers/block/virtio_blk.ko")
	require.NoError(t, err, "virtio_blk for the installer's kernel")
	modData, err := os.ReadFile(mod)
	require.NoError(t, err)
	start := time.Now()

	ui := dialog.New(l, Scaled(30*time.Second))
	t.Cleanup(func() {
		if t.Failed() {
			ui.Save("at-failure")
		}
	})
	_, err = ui.WalkDebianInstallerToShell(ctx, Scaled(150*time.Second))
	require.NoError(t, err)

	// virtio_console is in the initrd but nothing may have loaded it yet; the frame
	// channel needs its port. A missing module leaves the console transport.
	from := l.Console().Pos()
	require.NoError(t, l.Console().Send(ctx, "modprobe virtio_console 2>/dev/null; "+dialog.DebianInstallerHandOff))
	sh, err := l.AdoptShell(ctx, shell.DebianInstaller, lab.AdoptOptions{From: from, Step: Scaled(30 * time.Second), Channel: true})
	require.NoError(t, err, "a verified root shell from the installer's shell")
	t.Logf("installer shell after %s, transport %s (%s)", time.Since(start).Round(time.Second), sh.Transport(), sh.ChannelStatus())

	// The module is typed on the console whatever the channel, so one boot moves bytes
	// both ways: this on the console protocol, a caller's uploads over the frame channel.
	_, err = sh.UploadOnConsole(ctx, modData, "/tmp/virtio_blk.ko")
	require.NoError(t, err, "uploading virtio_blk on the console")
	r, err := sh.Run(ctx, fmt.Sprintf(`insmod /tmp/virtio_blk.ko && for i in $(seq 100); do [ $(ls -d /sys/block/vd* 2>/dev/null | wc -l) -ge %d ] && break; sleep 0.1; done; ls /sys/block`, len(sizesMB)),
		shell.Timeout(Scaled(time.Minute)))
	require.NoError(t, err, "loading virtio_blk")
	t.Logf("/sys/block: %s", r.Output)
	return l, sh
}
