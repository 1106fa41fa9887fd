package scenarios

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/inject"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// TestInjectPreNixosIntoInstaller carries pre-nixos into Debian's own installer
// (busybox, no systemd, no util-linux) with two blank virtio disks of different sizes:
// the static binary is uploaded and its sha256 checked there, it plans with
// --plan-only, and the plan must be the plan of the disks the guest's own /sys reports
// (names, sizes, rotational flags). The commands it called that the installer lacks are
// named. (The user's step 5: install pre-nixos by hand into a baseline and plan there.)
func TestInjectPreNixosIntoInstaller(t *testing.T) {
	scale := vm.ScaleFromEnv()
	scaled := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	ctx, cancel := context.WithTimeout(context.Background(), scaled(10*time.Minute))
	defer cancel()

	bin := preNixosBinary(ctx, t)
	l, sh := installerShellWithDisks(ctx, t, scaled, 2100, 2400)

	res, err := inject.Inject(ctx, sh, inject.Options{Binary: bin, Dir: filepath.Join(l.Dir(), "inject"), Timeout: scaled(2 * time.Minute)})
	require.NoError(t, err, "injecting pre-nixos into the installer")
	t.Logf("pre-nixos %s over %s; missing in the installer: %v\nplan:\n%s", res.SHA256, sh.Transport(), res.Missing, res.Plan)

	facts, err := inject.ReadSysBlock(ctx, sh)
	require.NoError(t, err)
	cands := inject.Candidates(facts)
	require.Len(t, cands, 2, "two virtio disks in the installer's /sys/block: %+v", facts)
	require.NotEqual(t, cands[0].Sectors, cands[1].Sectors, "disks of different sizes")
	require.NoError(t, inject.Check(res, facts), "the plan against the installer's /sys")
	disks, err := inject.PlanDisks(res.Plan)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"vda", "vdb"}, disks, "both disks planned")

	// The installer has no findmnt: it is named, and pre-nixos looked for a mounted boot
	// medium in the kernel's mount table instead, where there is none (the installer runs
	// from its initramfs), so the plan above stands on complete facts.
	require.Contains(t, res.Missing, "findmnt", "the installer's missing tool is named")
	require.Contains(t, string(res.Log), `"event":"pre_nixos.storage.boot_medium_from_mountinfo"`)
	mounts, err := sh.Run(ctx, "cat /proc/mounts")
	require.NoError(t, err)
	require.NotRegexp(t, ` (iso9660|squashfs) `, string(mounts.Output), "a boot medium pre-nixos could not look for")
	l.Mark("inject_checked")
}

// preNixosBinary builds the checkout's static pre-nixos.
func preNixosBinary(ctx context.Context, t *testing.T) []byte {
	t.Helper()
	dir, err := images.PreNixosBinaries(ctx)
	require.NoError(t, err, "building pre-nixos")
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := os.ReadFile(filepath.Join(dir, "pre-nixos"))
	require.NoError(t, err)
	return bin
}

// installerShellWithDisks boots Debian's installer with blank virtio disks of the given
// sizes (MB), walks its dialogs to "Execute a shell" as TestUpstreamInstallerShell does,
// takes the shell with the frame channel, and loads virtio_blk (the netboot initrd has
// no block drivers; disk-detect would fetch them) so the disks appear as vd*.
func installerShellWithDisks(ctx context.Context, t *testing.T, scaled func(time.Duration) time.Duration, sizesMB ...int) (*lab.Lab, *shell.Shell) {
	t.Helper()
	nb, err := images.DebianInstallerNetboot(ctx)
	require.NoError(t, err, "fetching the installer netboot kernel and initrd")
	kver, err := isoinspect.KernelVersion(nb.Kernel)
	require.NoError(t, err)
	release := strings.Fields(kver)[0]
	mod, err := images.DebianInstallerModule(ctx, release, "drivers/block/virtio_blk.ko")
	require.NoError(t, err, "virtio_blk for the installer's kernel")
	modData, err := os.ReadFile(mod)
	require.NoError(t, err)

	spec := vm.Spec{
		Image: vm.Image{Name: "debian-installer-" + nb.Version, Kernel: nb.Kernel, Initrd: nb.Initrd,
			Append: installerAppend, Profile: installerProfile},
		Net: true, MemoryMB: 1024, Accel: *flagAccel, ProbeKernel: nb.Kernel,
		ProbeCache: filepath.Join(images.CacheDir(), "accel-probe-installer.json"),
		Timeouts:   vm.DefaultTimeouts(),
	}
	for i, mb := range sizesMB {
		spec.Disks = append(spec.Disks, vm.DiskSpec{Name: fmt.Sprintf("disk%d.img", i), SizeMB: mb})
	}
	spec.Timeouts.Stop.Powerdown = 0
	notes := lab.NotesRootForTests()
	if *flagNotes != "" {
		notes = *flagNotes
	}
	l, err := lab.Start(ctx, lab.Config{Slug: "inject-installer", Notes: notes, VM: spec})
	if l != nil {
		t.Logf("run directory: %s", l.Dir())
	}
	require.NoError(t, err, "starting the installer VM")
	start := time.Now()
	t.Cleanup(func() {
		var verdict error
		outcome := runrec.Pass
		if t.Failed() {
			verdict, outcome = errors.New("test failed"), runrec.Fail
		}
		l.Scenario("inject-pre-nixos-installer", outcome, verdict, time.Since(start))
		keepIfFailed(t, l)
		cctx, ccancel := context.WithTimeout(context.Background(), scaled(2*time.Minute))
		defer ccancel()
		if err := l.Close(cctx, verdict); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})

	ui := newInstallerUI(l, scaled(30*time.Second))
	t.Cleanup(func() {
		if t.Failed() {
			ui.save("at-failure")
		}
	})
	_, err = ui.waitFor(ctx, scaled(150*time.Second), `the first installer dialog`, func(text string, hl []string) bool {
		return onScreen(text, "Select a language", "<Go Back>") && slices.Contains(hl, "English")
	})
	require.NoError(t, err)
	_, err = ui.press(ctx, keyTab, "focus on <Go Back>", func(_ string, hl []string) bool { return slices.Contains(hl, "<Go Back>") })
	require.NoError(t, err)
	_, err = ui.press(ctx, keyEnter, "the installer main menu", func(text string, hl []string) bool {
		return onScreen(text, "Debian installer main menu", "Execute a shell") && len(hl) == 1
	})
	require.NoError(t, err)
	require.NoError(t, ui.selectItem(ctx, "Execute a shell", 20))
	_, err = ui.press(ctx, keyEnter, `the "Execute a shell" confirmation`, func(text string, hl []string) bool {
		return onScreen(text, "Interactive shell", "<Continue>") && slices.Contains(hl, "<Continue>")
	})
	require.NoError(t, err)
	_, err = ui.press(ctx, keyEnter, "the installer's busybox shell", func(text string, _ []string) bool {
		return strings.Contains(text, "BusyBox") && installerProfile.ShellPrompt.MatchString(lastRow(text)+" ")
	})
	require.NoError(t, err)
	l.Mark("installer_shell")

	// virtio_console is in the initrd but nothing may have loaded it yet; the frame
	// channel needs its port. A missing module leaves the console transport.
	from := l.VM.Console.Pos()
	require.NoError(t, l.VM.Console.Send(ctx, "modprobe virtio_console 2>/dev/null; "+handOffLine))
	sh, err := shell.Login(ctx, l.VM.Console, installerProfile, shell.Options{
		Logger: l.VM.Log, From: from, Channel: l.VM.Channel,
		LoginTimeout: scaled(30 * time.Second), StepTimeout: scaled(30 * time.Second),
		Milestone: func(name string, at time.Time) { l.VM.Mark(name) },
	})
	require.NoError(t, err, "a verified root shell from the installer's shell")
	t.Logf("installer shell after %s, transport %s (%s)", time.Since(start).Round(time.Second), sh.Transport(), sh.ChannelStatus())

	// The module is typed on the console whatever the channel, so one boot moves bytes
	// both ways: this on the console protocol, pre-nixos over the frame channel.
	_, err = sh.UploadOnConsole(ctx, modData, "/tmp/virtio_blk.ko")
	require.NoError(t, err, "uploading virtio_blk on the console")
	want := len(sizesMB)
	r, err := sh.Run(ctx, fmt.Sprintf(`insmod /tmp/virtio_blk.ko && for i in $(seq 100); do [ $(ls -d /sys/block/vd* 2>/dev/null | wc -l) -ge %d ] && break; sleep 0.1; done; ls /sys/block`, want),
		shell.Timeout(scaled(time.Minute)))
	require.NoError(t, err, "loading virtio_blk")
	t.Logf("/sys/block: %s", r.Output)
	return l, sh
}
