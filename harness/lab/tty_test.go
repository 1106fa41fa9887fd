package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	expect "github.com/Netflix/go-expect"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/harness/fakeguest"
)

// pauseChildEnv marks the re-executed test binary that pauses on its controlling terminal.
const pauseChildEnv = "BOOTLAB_TEST_PAUSE_ON_TTY"

// TestEnterOnTheControllingTerminalEndsThePause is the situation of `go test ./scenarios
// -boot-image-debug`: the process pausing has no terminal on stdin (go test gives it
// none) and its output is not a terminal, but it has a controlling terminal. The test
// binary is run again as that process, in a new session whose controlling terminal is a
// go-expect pty; it pauses a fake VM through ControllingTerminal exactly as the
// scenarios do. The pause message must appear on the pty, Enter typed there must end the
// pause, and the VM must then be closed.
func TestEnterOnTheControllingTerminalEndsThePause(t *testing.T) {
	if os.Getenv(pauseChildEnv) == "1" {
		pauseOnControllingTerminal(t)
		return
	}
	var seen fakeguest.Buffer // written by go-expect and the child's output copier while the test reads
	c, err := expect.NewConsole(expect.WithStdout(&seen), expect.WithDefaultTimeout(30*time.Second))
	require.NoError(t, err, "opening a pty for go-expect")
	defer c.Close()

	var out fakeguest.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestEnterOnTheControllingTerminalEndsThePause$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), pauseChildEnv+"=1")
	devnull, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer devnull.Close()
	// No terminal on stdin, stdout or stderr (go test's child has none either); the pty
	// is passed only to become the new session's controlling terminal (fd 3).
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, &out, &out
	cmd.ExtraFiles = []*os.File{c.Tty()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 3}
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	}()

	expectOn := func(re string) {
		t.Helper()
		ch := make(chan error, 1)
		go func() { _, err := c.Expect(expect.Regexp(regexp.MustCompile(re))); ch <- err }()
		select {
		case err := <-ch:
			require.NoError(t, err, "waiting for %q on the controlling terminal; it showed:\n%s\nthe child printed:\n%s", re, seen.String(), out.String())
		case err := <-done:
			t.Fatalf("the child ended (%v) before %q appeared on its terminal:\n%s\nit printed:\n%s", err, re, seen.String(), out.String())
		case <-time.After(45 * time.Second):
			t.Fatalf("no %q on the controlling terminal within 45s:\n%s", re, seen.String())
		}
	}
	expectOn(`press Enter here to continue`)
	require.Contains(t, seen.String(), "bootlab attach ", "the message says how to attach")
	select {
	case err := <-done:
		t.Fatalf("the pause ended before Enter (%v):\n%s", err, out.String())
	case <-time.After(500 * time.Millisecond):
	}
	_, err = c.Send("\r") // what the Enter key sends; the terminal's ICRNL makes it a line
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err, "the paused child:\n%s", out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("Enter on the controlling terminal did not end the pause:\n%s", out.String())
	}
	require.Contains(t, out.String(), "pause ended; VM closed", "the child went on past the pause and closed the VM")
}

// pauseOnControllingTerminal is the child's side: pause a fake VM as the scenarios do
// (scenarios/env_test.go debugPause) and close it afterwards.
func pauseOnControllingTerminal(t *testing.T) {
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		require.False(t, isTTY(f), "fd %d must not be a terminal: the pause has to find /dev/tty itself", f.Fd())
	}
	tty := ControllingTerminal()
	require.NotNil(t, tty, "the pty is this process's controlling terminal and it is in the foreground")
	defer tty.Close()

	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"})
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	_, err = l.Login(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	l.KeepForDebug(ctx, PauseOptions{Why: "pause after login", Out: tty, Enter: tty, Wait: time.Hour,
		Captures: func(context.Context) error { return nil }})
	require.Less(t, time.Since(began), 50*time.Second, "the pause ended on Enter, not on its context")
	require.NoError(t, l.Close(context.Background(), nil))
	require.False(t, l.vm.Running(), "the VM is closed after the pause")
	fmt.Println("pause ended; VM closed")
}

func isTTY(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
