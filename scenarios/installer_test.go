package scenarios

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/labtest"
)

// TestUpstreamInstallerShell is scenario 9, "Upstream baseline A": Debian's own
// installer (netboot kernel and initrd, nothing built here), driven in screen mode from
// its first dialog to "Execute a shell", then framed commands in that shell. It proves
// the harness works on an image nobody here made: a full-screen newt UI recognised by
// what is on the screen, navigated with keys, and a root shell that was never logged in
// to.
func TestUpstreamInstallerShell(t *testing.T) {
	m := labtest.BootInstaller(t, "upstream-installer")

	// From the first dialog (English preselected) to the installer's busybox shell.
	// GNU screen's status line names the installer window: the UI really is the one
	// S70menu starts on a serial console, which is why the shell needs a hand-off.
	require.Contains(t, m.WalkToShell(), "(1*installer)", "GNU screen status line")
	require.Equal(t, 0, m.TakeShell(), "uid of the installer's shell")

	require.Equal(t, m.Release+"\n", m.Succeed("uname -r"), "uname -r against the version in the kernel image's header")

	links := m.Succeed("ip -o link")
	require.Regexp(t, `(?m)^1: lo: <LOOPBACK[A-Z_,]*> .*link/loopback 00:00:00:00:00:00`, links, "ip -o link: loopback")
	require.Regexp(t, `(?m)^[0-9]+: (ens|enp|eth)[a-z0-9]*: <[A-Z_,]+> .*link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff`, links,
		"ip -o link: the virtio NIC with QEMU's default MAC address")

	cmdline := m.Succeed("cat /proc/cmdline")
	require.Contains(t, strings.Fields(cmdline), "console=ttyS0,115200n8", "/proc/cmdline")
	require.Contains(t, cmdline, labtest.InstallerCmdline, "/proc/cmdline carries the command line we booted with")

	// The shell that answered is the one "Execute a shell" started: a child of the
	// installer's debconf (main-menu), with di-utils-shell's start-shell waiting for it
	// to exit. GNU screen is stopped rather than gone, as the hand-off intends.
	ps := m.Succeed(`p=$(awk '/^PPid:/ {print $2}' /proc/$$/status); echo "parent $p: $(tr '\0' ' ' </proc/$p/cmdline)"; ps`)
	require.Regexp(t, `(?m)^parent [0-9]+: debconf -o d-i /usr/bin/main-menu`, ps, "the installer shell's parent")
	require.Regexp(t, `(?m) /bin/start-shell di-utils-shel`, ps, "di-utils-shell's start-shell in ps")
	stopped := 0
	for _, line := range strings.Split(ps, "\n") {
		// busybox ps: PID USER VSZ STAT COMMAND
		f := strings.Fields(line)
		if len(f) >= 5 && (strings.HasSuffix(f[4], "/screen") || strings.HasSuffix(f[4], "/SCREEN") || f[4] == "{screen}") {
			require.True(t, strings.HasPrefix(f[3], "T"), "GNU screen process not stopped: %q", line)
			stopped++
		}
	}
	require.GreaterOrEqual(t, stopped, 2, "GNU screen client and server in ps output")
	m.Mark("installer_commands")
}
