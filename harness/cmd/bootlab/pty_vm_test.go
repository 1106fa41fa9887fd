package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	expect "github.com/Netflix/go-expect"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

// Tests that drive bootlab's own interactive terminals the way a person does: the
// built binary runs on a real pty (its controlling terminal) and go-expect types and
// reads. go-expect is for exactly this, a local program's short, line-oriented terminal
// output (docs/decisions.md); its traps are worked around here: its timeout is an
// idle deadline reset per rune, so every wait has a total deadline as well
// (expectWithin); it reads only inside Expect, so each console is only expected on
// while its program prints little; and the parent closes its copy of the pty slave
// after the child exits (EOF arrives as EIO otherwise never).

// ptyConsole is a go-expect console whose whole output is also kept for messages.
type ptyConsole struct {
	*expect.Console
	seen *fakeguest.Buffer
}

func newPTYConsole(t *testing.T) *ptyConsole {
	t.Helper()
	seen := &fakeguest.Buffer{}
	c, err := expect.NewConsole(expect.WithStdout(seen), expect.WithDefaultTimeout(vmScaled(5*time.Minute)))
	require.NoError(t, err, "opening a pty for go-expect")
	t.Cleanup(func() { c.Close() })
	return &ptyConsole{Console: c, seen: seen}
}

// start runs the bootlab binary with the pty as stdin, stdout, stderr and controlling
// terminal, as a shell would.
func (c *ptyConsole) start(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Tty(), c.Tty(), c.Tty()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return startReaped(t, cmd)
}

// expectWithin waits for re on the console for at most total, however chatty the
// program is: Expect runs in a goroutine and, at the deadline, the console is closed,
// which ends the Expect.
func (c *ptyConsole) expectWithin(t *testing.T, total time.Duration, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	type result struct {
		out string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		out, err := c.Expect(expect.Regexp(rx), expect.WithTimeout(total))
		ch <- result{out, err}
	}()
	select {
	case r := <-ch:
		require.NoError(t, r.err, "waiting for %q; the terminal showed:\n%s", re, c.seen.String())
		return rx.FindStringSubmatch(r.out)
	case <-time.After(total):
		c.Close()
		t.Fatalf("no %q within %s (total deadline); the terminal showed:\n%s", re, total, c.seen.String())
		return nil
	}
}

func (c *ptyConsole) termios(t *testing.T) *unix.Termios {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(c.Tty().Fd()), unix.TCGETS)
	require.NoError(t, err)
	return tio
}

// waitExit waits (bounded) for a started bootlab and returns its exit status.
func waitExit(t *testing.T, cmd *exec.Cmd, total time.Duration, c *ptyConsole) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(total):
		t.Fatalf("bootlab %v did not exit within %s; the terminal showed:\n%s", cmd.Args[1:], total, c.seen.String())
		return -1
	}
}

func buildBootlab(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bootlab")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "building bootlab: %s", out)
	return bin
}

// TestTerminalsThroughPTY drives, on the mini image, `bootlab run --pause-after login`
// in one terminal and `bootlab attach` in another, as a person would: the run pauses
// and waits for Enter; attach puts its terminal in raw mode, what is typed reaches the
// guest's shell, Ctrl-] detaches and the terminal's settings are exactly as before; Enter
// in the run's terminal lets the run continue on the shell it takes back, to a pass.
func TestTerminalsThroughPTY(t *testing.T) {
	vmgate.VM(t)
	bin := buildBootlab(t)
	notes := t.TempDir()

	runTerm := newPTYConsole(t)
	run := runTerm.start(t, bin, "run", "--image", "mini", "--notes", notes, "--pause-after", "login", "--cmd", "echo after-the-pause-$((6*7))")
	m := runTerm.expectWithin(t, vmScaled(5*time.Minute), `bootlab attach (\S+) `) // the space: go-expect matches rune by rune
	dir := m[1]
	runTerm.expectWithin(t, vmScaled(30*time.Second), `press Enter here to continue`)

	attTerm := newPTYConsole(t)
	before := attTerm.termios(t)
	require.NotZero(t, before.Lflag&unix.ICANON, "a fresh pty starts in canonical mode")
	require.NotZero(t, before.Lflag&unix.ECHO, "and echoes")
	att := attTerm.start(t, bin, "attach", dir)
	attTerm.expectWithin(t, vmScaled(30*time.Second), `attached to .*Ctrl-\] detaches`)
	raw := attTerm.termios(t)
	require.Zero(t, raw.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG), "attach puts the terminal in raw mode (no line editing, echo or signals)")
	require.Zero(t, raw.Iflag&unix.ICRNL, "raw mode passes CR through")

	// Typed into the guest's shell: its output comes back (the expression is evaluated
	// by the guest, so the echo of what was typed cannot match).
	_, err := attTerm.Send("echo typed-into-the-guest-$((6*7))\r")
	require.NoError(t, err)
	attTerm.expectWithin(t, vmScaled(time.Minute), `typed-into-the-guest-42`)

	_, err = attTerm.Send("\x1d") // Ctrl-]
	require.NoError(t, err)
	attTerm.expectWithin(t, vmScaled(30*time.Second), `bootlab: detached`)
	require.Equal(t, 0, waitExit(t, att, vmScaled(30*time.Second), attTerm), "attach exits 0 on Ctrl-]")
	after := attTerm.termios(t)
	require.Equal(t, *before, *after, "the terminal's settings are restored after detaching")

	// Detaching leaves the run paused; Enter in its terminal continues it.
	time.Sleep(2 * time.Second)
	require.Nil(t, run.ProcessState, "the run is still paused after the attach ended")
	_, err = runTerm.Send("\n")
	require.NoError(t, err)
	runTerm.expectWithin(t, vmScaled(2*time.Minute), `after-the-pause-42`)
	runTerm.expectWithin(t, vmScaled(3*time.Minute), `verdict: pass`)
	require.Equal(t, 0, waitExit(t, run, vmScaled(time.Minute), runTerm), "the run passes after the pause")
	_, err = os.Stat(filepath.Join(dir, "captures", "index.md"))
	require.NoError(t, err, "the pause took the standard captures")
}

// startOnControllingTerminal runs the bootlab binary with the pty only as its
// controlling terminal: stdin is /dev/null and its output goes to out, as for a run whose
// stdin and stdout are redirected (or the test binary go test starts).
func (c *ptyConsole) startOnControllingTerminal(t *testing.T, out io.Writer, bin string, args ...string) *exec.Cmd {
	t.Helper()
	devnull, err := os.Open(os.DevNull)
	require.NoError(t, err)
	t.Cleanup(func() { devnull.Close() })
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, out, out
	cmd.ExtraFiles = []*os.File{c.Tty()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 3}
	return startReaped(t, cmd)
}

// qemuGone says whether the QEMU a run directory names (qemu.pid) has exited.
func qemuGone(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, lab.PIDFile))
	require.NoError(t, err, "the run records QEMU's pid")
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestPauseEnterOnControllingTerminal: the pause finds the person's terminal even when
// stdin and stdout are not it (`bootlab run ... </dev/null >log`, or go test running the
// scenarios with -boot-image-debug): the message appears on the controlling terminal,
// Enter typed there ends the pause, the run goes on and the VM is closed. The second run
// is the debug keep on failure: a command that ends the root shell (`exit 3`) is named at
// once, the VM is kept, and Enter ends the run with its failing verdict.
func TestPauseEnterOnControllingTerminal(t *testing.T) {
	vmgate.VM(t)
	bin := buildBootlab(t)
	notes := t.TempDir()

	term := newPTYConsole(t)
	var out fakeguest.Buffer
	run := term.startOnControllingTerminal(t, &out, bin, "run", "--image", "mini", "--notes", notes, "--pause-after", "login", "--debug-wait", "10m", "--cmd", "echo after-the-pause-$((6*7))")
	dir := term.expectWithin(t, vmScaled(5*time.Minute), `bootlab attach (\S+) `)[1]
	term.expectWithin(t, vmScaled(30*time.Second), `press Enter here to continue`)
	time.Sleep(2 * time.Second)
	require.Nil(t, run.ProcessState, "the run waits for Enter, not for --debug-wait")
	require.False(t, qemuGone(t, dir), "the VM is kept during the pause")
	_, err := term.Send("\r") // the Enter key; the terminal's ICRNL makes it a line
	require.NoError(t, err)
	require.Equal(t, 0, waitExit(t, run, vmScaled(3*time.Minute), term), "the run passes after the pause:\n%s", out.String())
	require.Contains(t, out.String(), "after-the-pause-42", "the run went on past the pause on the shell it took back")
	require.Contains(t, out.String(), "verdict: pass")
	require.True(t, qemuGone(t, dir), "the VM is closed after the run")

	term = newPTYConsole(t)
	out = fakeguest.Buffer{}
	run = term.startOnControllingTerminal(t, &out, bin, "run", "--image", "mini", "--notes", notes, "--debug", "--debug-wait", "10m", "--cmd", "exit 3")
	dir = term.expectWithin(t, vmScaled(5*time.Minute), `bootlab attach (\S+) `)[1]
	term.expectWithin(t, vmScaled(30*time.Second), `press Enter here to continue`)
	require.Contains(t, out.String(), "FAILED", "the failure is printed before the pause")
	require.Contains(t, out.String(), "the root shell exited with status 3", "the failure names the shell's exit")
	require.False(t, qemuGone(t, dir), "a failed run's VM is kept with --debug")
	_, err = term.Send("\r")
	require.NoError(t, err)
	require.Equal(t, exitFail, waitExit(t, run, vmScaled(3*time.Minute), term), "the run fails after the pause:\n%s", out.String())
	require.Contains(t, out.String(), "verdict: fail")
	require.True(t, qemuGone(t, dir), "the VM is closed after the run")
}

// startReaped starts cmd and kills and reaps it when the test ends, if nothing waited
// for it first.
func startReaped(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}
