package vmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// ext4Modules are the kernel package's ext4 module and what it needs, in load order.
var ext4Modules = []string{"lib/crc16.ko", "fs/mbcache.ko", "fs/jbd2/jbd2.ko", "crypto/crc32c_generic.ko", "fs/ext4/ext4.ko"}

// ext4Files takes ext4 and its dependencies out of the mini image's kernel package
// (Debian builds them as modules) and loads them at boot, with an inittab whose
// shutdown unmounts: a guest that can keep a file system and power off cleanly.
func ext4Files(t *testing.T) map[string]images.File {
	t.Helper()
	base := mini(t, images.MiniSpec{})
	debs, err := filepath.Glob(filepath.Join(labtest.Config().Cache, "debs", base.KernelPackage+"_*.deb"))
	require.NoError(t, err)
	require.NotEmpty(t, debs, "the kernel package %s is in the cache once the mini image is built", base.KernelPackage)
	tmp := t.TempDir()
	out, err := exec.Command("dpkg-deb", "-x", debs[0], tmp).CombinedOutput()
	require.NoError(t, err, "dpkg-deb: %s", out)
	files := map[string]images.File{}
	var load []string
	for _, m := range ext4Modules {
		b, err := os.ReadFile(filepath.Join(tmp, "lib/modules", base.KernelVersion, "kernel", m))
		require.NoError(t, err)
		files["/lib/modules/ext4/"+filepath.Base(m)] = images.File{Content: string(b)}
		load = append(load, "insmod /lib/modules/ext4/"+filepath.Base(m))
	}
	files["/etc/rc.local"] = images.File{Content: "#!/bin/sh\n" + strings.Join(load, "\n") + "\n", Mode: 0o755}
	files["/etc/inittab"] = images.File{Content: "::sysinit:/bin/true\nttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n" +
		"::ctrlaltdel:/sbin/reboot\n::shutdown:/bin/sync\n::shutdown:/bin/umount -a -r\n"}
	return files
}

// TestKeptDiskPowersOffCleanly: a run that keeps its disk (-keep) does not take the
// quick sync-and-quit stop: the guest powers itself off, unmounting its file system, and
// the ext4 on the kept disk is clean afterwards (no journal to recover, e2fsck content).
func TestKeptDiskPowersOffCleanly(t *testing.T) {
	img := mini(t, images.MiniSpec{Version: "ext4", Files: ext4Files(t)})
	l := labtest.StartT(t, labtest.Image(miniImage(img, shell.Mini)), labtest.Memory(256), labtest.Slug("kept-disk"),
		labtest.Timeouts(func(to *vm.Timeouts) { to.Login = scaled(2 * time.Minute) }), labtest.KeepDisks(true),
		labtest.Disks(vm.DiskSpec{Name: "kept.img", SizeMB: 64, Seed: labtest.SeedExt4("kept", "marker.txt", "before\n")}))
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	_, err := l.Login(ctx)
	require.NoError(t, err)
	_, err = l.Run(ctx, "mount -t ext4 /dev/vda /mnt && echo after > /mnt/marker.txt && mkdir /mnt/new")
	require.NoError(t, err)
	require.NoError(t, l.Close(ctx, nil))
	disk := filepath.Join(l.Dir(), "kept.img")
	require.Equal(t, "after\n", labtest.ReadExt4File(t, disk, "marker.txt"))
	out, err := exec.Command("dumpe2fs", "-h", disk).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Regexp(t, `(?m)^Filesystem state:\s+clean$`, string(out))
	require.NotContains(t, string(out), "needs_recovery", "the journal was closed: the guest unmounted before powering off")
	out, err = exec.Command("e2fsck", "-fn", disk).CombinedOutput()
	require.NoError(t, err, "e2fsck -fn: %s", out)
	m := metadata(t, l.Dir())
	sd, _ := m.Milestone(runrec.MilestoneShutdown)
	require.Equal(t, "ended by "+string(qemu.StopGuest), sd.Note)
}

// shellLoopInit is an upstream rescue image's /init: a shell loop as PID 1, which
// ignores busybox poweroff's signal, and nothing that handles the ACPI power button.
const shellLoopInit = `#!/bin/sh
. /etc/rc.mini
while :; do setsid cttyhack sh -l; done
`

// TestGuestThatNeverPowersOffStopsFast: on a guest that ignores both poweroff and the
// power button, the quick stop (nothing kept) ends QEMU within 3 s, and a clean
// poweroff asked for explicitly sees the prompt come back with no shutdown progress,
// finds no power button handler, and quits within seconds instead of waiting out 30 s
// and 20 s.
func TestGuestThatNeverPowersOffStopsFast(t *testing.T) {
	img := mini(t, images.MiniSpec{Version: "shell-loop", Init: shellLoopInit})
	prof := shell.Fixture // a root shell straight away; ACPI not ruled out by the profile
	for _, clean := range []bool{false, true} {
		l := start(t, "never-powers-off", miniImage(img, prof), nil)
		ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
		_, err := l.Login(ctx)
		require.NoError(t, err)
		began := time.Now()
		if clean {
			stage, err := l.PowerOff(ctx)
			require.NoError(t, err)
			require.Equal(t, qemu.StopQuit, stage)
			require.Less(t, time.Since(began), 8*time.Second, "the watched stages ended on evidence")
		}
		require.NoError(t, l.Close(ctx, nil))
		cancel()
		m := metadata(t, l.Dir())
		notes := map[string]string{}
		for _, ms := range m.Milestones {
			notes[ms.Name] = ms.Note
		}
		if clean {
			require.Contains(t, notes["shutdown:"+string(qemu.StopGuest)], "refused: the shell's prompt came back and no shutdown progress followed")
			require.Contains(t, notes["shutdown:"+string(qemu.StopPowerdown)], "skipped: no process on the guest handles the power button")
		} else {
			require.Less(t, time.Since(began), 3*time.Second, "sync and quit")
			require.Equal(t, "done", notes["shutdown:"+string(qemu.StopSync)])
			require.Equal(t, "QEMU exited", notes["shutdown:"+string(qemu.StopQuit)])
		}
	}
}
