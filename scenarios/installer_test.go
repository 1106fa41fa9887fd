package scenarios

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/harness/dialog"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/shell"
)

// The installer's command line, shell profile and hand-off line (harness/dialog says why
// each is what it is).
const (
	installerAppend = dialog.DebianInstallerAppend
	handOffLine     = dialog.DebianInstallerHandOff
)

var installerProfile = shell.DebianInstaller

// TestUpstreamInstallerShell is scenario 9, "Upstream baseline A": Debian's own
// installer (netboot kernel and initrd, nothing built here), driven in screen mode from
// its first dialog to "Execute a shell", then framed commands in that shell. It proves
// the harness works on an image nobody here made: a full-screen newt UI recognised by
// what is on the screen, navigated with keys, and a root shell that was never logged in
// to.
func TestUpstreamInstallerShell(t *testing.T) {
	labtest.Slot(t, 65*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), labtest.Scaled(5*time.Minute))
	defer cancel()

	l, kernel := labtest.StartInstaller(ctx, t, "upstream-installer")
	kver, err := isoinspect.KernelVersion(kernel)
	require.NoError(t, err, "reading the version from the installer kernel's header")
	require.NotEmpty(t, strings.Fields(kver), "installer kernel header has an empty version")
	release := strings.Fields(kver)[0]
	start := time.Now()
	check := func(err error) {
		t.Helper()
		require.NoError(t, err)
	}

	ui := dialog.New(l, labtest.Scaled(30*time.Second))
	// Runs before the lab closes (cleanups are last in, first out): any failure, an
	// assertion on command output included, shows and keeps the screen it happened on.
	t.Cleanup(func() {
		if t.Failed() {
			ui.Save("at-failure")
			t.Logf("screen at failure (highlighted %q):\n%s", ui.Highlighted(), ui.Text())
		}
	})

	// 1-4. From the first dialog (the language question, English preselected) back to
	// the main menu, down to "Execute a shell", through its confirmation into busybox
	// ash: each step recognised by what the screen shows, each screen saved.
	first, err := ui.WalkDebianInstallerToShell(ctx, labtest.Scaled(150*time.Second))
	check(err)
	// GNU screen's status line names the installer window: the UI really is the one
	// S70menu starts on a serial console, which is why the shell needs a hand-off below.
	require.Contains(t, first, "(1*installer)", "GNU screen status line")
	t.Logf("installer shell after %s", time.Since(start).Round(time.Second))

	// 5. Hand the shell to the shell package: out from under GNU screen (see handOffLine),
	// then a login that finds an open shell and proves root with a framed `id -u`.
	from := l.Console().Pos()
	if err := l.Console().Send(ctx, handOffLine); err != nil {
		check(ui.Failure("typing the hand-off line", err))
	}
	sh, err := l.AdoptShell(ctx, installerProfile, lab.AdoptOptions{From: from, Step: labtest.Scaled(30 * time.Second)})
	if err != nil {
		check(ui.Failure("getting a verified root shell from the installer's shell", err))
	}
	require.Equal(t, 0, sh.UID(), "uid of the installer's shell")

	run := func(cmd string) string {
		t.Helper()
		out, err := l.Succeed(ctx, cmd, shell.Timeout(labtest.Scaled(30*time.Second)))
		if err != nil {
			check(ui.Failure(fmt.Sprintf("running %q in the installer's shell", cmd), err))
		}
		t.Logf("%s:\n%s", cmd, out)
		return out
	}

	// 6. The commands, and what they must show.
	out := run("uname -r")
	require.Equal(t, release+"\n", out, "uname -r against the version in the kernel image's header (%q)", kver)

	out = run("ip -o link")
	require.Regexp(t, `(?m)^1: lo: <LOOPBACK[A-Z_,]*> .*link/loopback 00:00:00:00:00:00`, out, "ip -o link: loopback")
	require.Regexp(t, `(?m)^[0-9]+: (ens|enp|eth)[a-z0-9]*: <[A-Z_,]+> .*link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff`, out,
		"ip -o link: the virtio NIC with QEMU's default MAC address")

	out = run("cat /proc/cmdline")
	require.Contains(t, strings.Fields(out), "console=ttyS0,115200n8", "/proc/cmdline")
	require.Contains(t, out, installerAppend, "/proc/cmdline carries the command line we booted with")

	// The shell that answered is the one "Execute a shell" started: a child of the
	// installer's debconf (main-menu), with di-utils-shell's start-shell waiting for it
	// to exit. GNU screen is stopped rather than gone, as the hand-off intends.
	out = run(`p=$(awk '/^PPid:/ {print $2}' /proc/$$/status); echo "parent $p: $(tr '\0' ' ' </proc/$p/cmdline)"; ps`)
	require.Regexp(t, `(?m)^parent [0-9]+: debconf -o d-i /usr/bin/main-menu`, out, "the installer shell's parent")
	require.Regexp(t, `(?m) /bin/start-shell di-utils-shel`, out, "di-utils-shell's start-shell in ps")
	stopped := 0
	for _, line := range strings.Split(out, "\n") {
		// busybox ps: PID USER VSZ STAT COMMAND
		f := strings.Fields(line)
		if len(f) >= 5 && (strings.HasSuffix(f[4], "/screen") || strings.HasSuffix(f[4], "/SCREEN") || f[4] == "{screen}") {
			require.True(t, strings.HasPrefix(f[3], "T"), "GNU screen process not stopped: %q", line)
			stopped++
		}
	}
	require.GreaterOrEqual(t, stopped, 2, "GNU screen client and server in ps output")
	l.Mark("installer_commands")
}
