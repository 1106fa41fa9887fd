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

	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/harness/dialog"
	"github.com/bootlab/bootlab/harness/inject"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"github.com/bootlab/bootlab/harness/shell"
)

// StartInstaller boots Debian's own installer (netboot kernel and initrd, nothing built
// here) for t with the given disks, on its serial console, and returns the lab and the
// installer's kernel. A NIC so the installer has more than loopback; 1024 MB because
// below ~737 MiB it enters low-memory mode and its dialogs change; its own accelerator
// probe cache, because the cache holds one verdict per probe kernel.
func StartInstaller(ctx context.Context, t *testing.T, slug string, disks ...lab.Disk) (*lab.Lab, string) {
	t.Helper()
	vmgate.Gate(t)
	nb, err := Cache().DebianInstallerNetboot(ctx)
	require.NoError(t, err, "fetching the installer netboot kernel and initrd")
	l := StartT(t,
		Image(lab.Image{Name: "debian-installer-" + nb.Version, Kernel: nb.Kernel, Initrd: nb.Initrd,
			Append: dialog.DebianInstallerAppend, Profile: shell.DebianInstaller}),
		NIC(), Memory(1024), Disks(disks...), Slug(slug),
		Probe(nb.Kernel, filepath.Join(Config().Cache, "accel-probe-installer.json")))
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
	var disks []lab.Disk
	for i, mb := range sizesMB {
		disks = append(disks, lab.Disk{Name: fmt.Sprintf("disk%d.img", i), SizeMB: mb})
	}
	l, kernel := StartInstaller(ctx, t, slug, disks...)
	kver, err := isoinspect.KernelVersion(kernel)
	require.NoError(t, err, "reading the version from the installer kernel's header")
	require.NotEmpty(t, strings.Fields(kver), "installer kernel header has an empty version")
	mod, err := Cache().DebianInstallerModule(ctx, strings.Fields(kver)[0], "drivers/block/virtio_blk.ko")
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
	from, err := l.Type(ctx, "modprobe virtio_console 2>/dev/null; "+dialog.DebianInstallerHandOff)
	require.NoError(t, err)
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

// Installer is Debian's installer booted as a Machine: its dialogs are driven in screen
// mode (UI) until "Execute a shell", and then the Machine's commands run in that shell.
type Installer struct {
	*Machine
	// UI is the installer's full-screen dialogs, recognised by what the screen shows.
	UI *dialog.UI
	// Release is the installer kernel's release, read from the kernel image's header.
	Release string

	sh *shell.Shell // the installer's shell, once taken
}

// BootInstaller boots Debian's installer (StartInstaller) for t, holding a VM slot. On
// a failure the screen it happened on is saved in the run and shown in the test's log.
func BootInstaller(t *testing.T, slug string, disks ...DiskSpec) *Installer {
	t.Helper()
	holdSlot(t)
	ctx, cancel := deadline(5 * time.Minute)
	defer cancel()
	l, kernel := StartInstaller(ctx, t, slug, disks...)
	kver, err := isoinspect.KernelVersion(kernel)
	require.NoError(t, err, "reading the version from the installer kernel's header")
	require.NotEmpty(t, strings.Fields(kver), "installer kernel header has an empty version")
	in := &Installer{Machine: &Machine{t: t, lab: l, pre: &preState{}}, UI: dialog.New(l, Scaled(30*time.Second)), Release: strings.Fields(kver)[0]}
	// Runs before the lab closes (cleanups are last in, first out): any failure, an
	// assertion on command output included, shows and keeps the screen it happened on.
	t.Cleanup(func() {
		if t.Failed() {
			in.UI.Save("at-failure")
			t.Logf("screen at failure (highlighted %q):\n%s", in.UI.Highlighted(), in.UI.Text())
		}
	})
	return in
}

// WalkToShell walks the installer from its first dialog (the language question) back to
// the main menu, down to "Execute a shell" and through its confirmation, each step
// recognised by what the screen shows and saved; it returns the first screen.
func (in *Installer) WalkToShell() string {
	in.t.Helper()
	ctx, cancel := deadline(5 * time.Minute)
	defer cancel()
	first, err := in.UI.WalkDebianInstallerToShell(ctx, Scaled(150*time.Second))
	require.NoError(in.t, err, "walking the installer to its shell")
	return first
}

// TakeShell hands the installer's shell to bootlab: out from under GNU screen
// (dialog.DebianInstallerHandOff says why), then a login that finds an open shell and
// proves root with a framed `id -u`. It returns the shell's uid.
func (in *Installer) TakeShell() int {
	in.t.Helper()
	ctx, cancel := deadline(2 * time.Minute)
	defer cancel()
	l := in.lab
	from, err := l.Type(ctx, dialog.DebianInstallerHandOff)
	if err != nil {
		require.NoError(in.t, in.UI.Failure("typing the hand-off line", err))
	}
	sh, err := l.AdoptShell(ctx, shell.DebianInstaller, lab.AdoptOptions{From: from, Step: Scaled(30 * time.Second)})
	if err != nil {
		require.NoError(in.t, in.UI.Failure("getting a verified root shell from the installer's shell", err))
	}
	return sh.UID()
}

// InstallerCmdline is the command line the installer boots with (dialog says why).
const InstallerCmdline = dialog.DebianInstallerAppend

// BootInstallerShell boots Debian's installer with blank virtio disks of the given
// sizes in MiB and returns it at its shell with the disks visible (InstallerShell: the
// baseline for tests about what runs inside the installer, not about reaching it).
func BootInstallerShell(t *testing.T, slug string, sizesMB ...int) *Installer {
	t.Helper()
	holdSlot(t)
	ctx, cancel := deadline(10 * time.Minute)
	defer cancel()
	l, sh := InstallerShell(ctx, t, slug, sizesMB...)
	return &Installer{Machine: &Machine{t: t, lab: l, pre: &preState{}}, sh: sh}
}

// InjectPreNixos builds pre-nixos, uploads it into the installer's shell, checks its
// sha256 there and runs its plan (inject.Inject); the result is kept under inject/ in
// the run directory.
func (in *Installer) InjectPreNixos() *inject.Result {
	in.t.Helper()
	require.NotNil(in.t, in.sh, "the installer's shell was not taken (BootInstallerShell)")
	ctx, cancel := deadline(10 * time.Minute)
	defer cancel()
	bin, err := inject.PreNixos(ctx, Cache())
	require.NoError(in.t, err, "building pre-nixos to inject")
	res, err := inject.Inject(ctx, in.sh, inject.Options{Binary: bin, Dir: filepath.Join(in.Dir(), "inject"), Timeout: Scaled(2 * time.Minute)})
	require.NoError(in.t, err, "injecting pre-nixos into the installer")
	in.t.Logf("pre-nixos %s over %s; missing in the installer: %v\nplan:\n%s", res.SHA256, in.sh.Transport(), res.Missing, res.Plan)
	return res
}

// SysBlock is what the guest's own /sys/block says of its disks.
func (in *Installer) SysBlock() []inject.SysDisk {
	in.t.Helper()
	ctx, cancel := deadline(commandDeadline)
	defer cancel()
	facts, err := inject.ReadSysBlock(ctx, in.sh)
	require.NoError(in.t, err, "reading /sys/block in the guest")
	return facts
}
