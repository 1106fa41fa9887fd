package lab

import (
	"bufio"
	"context"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/fakeguest"
)

// askCaptures is what `bootlab capture --running` does: one connection, one reply line.
func askCaptures(t *testing.T, dir string) string {
	t.Helper()
	target, err := os.Readlink(dir + "/" + CaptureSocket)
	require.NoError(t, err, "a paused run links its capture socket into the run directory")
	c, err := dialUnix(target)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return line
}

// waitFor polls cond (bounded) while a pause runs in another goroutine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDebugPauseEnterAndCaptures: the pause every debug path shares takes the captures,
// serves the console and the capture socket, answers a capture request on the shell it
// handed over, and ends on a line from the terminal, taking the shell back.
func TestDebugPauseEnterAndCaptures(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"})
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	defer l.Close(context.Background(), nil)
	_, err = l.Login(context.Background())
	require.NoError(t, err)

	var captures atomic.Int32
	enterR, enterW := io.Pipe()
	var out fakeguest.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.KeepForDebug(context.Background(), PauseOptions{Why: "pause after login", Out: &out, Enter: enterR, Wait: time.Hour,
			Captures: func(ctx context.Context) error {
				_, _, err := l.Exec(ctx, "echo captured")
				if err == nil {
					captures.Add(1)
				}
				return err
			}})
	}()
	waitFor(t, "the pause message", func() bool { return strings.Contains(out.String(), "press Enter here to continue") })
	require.Contains(t, out.String(), "bootlab attach "+l.Dir())
	require.Equal(t, int32(1), captures.Load(), "the captures are taken when the pause starts")
	_, err = os.Readlink(l.rec.Path(ConsoleSocket))
	require.NoError(t, err, "the console is served for bootlab attach")

	reply := askCaptures(t, l.Dir())
	require.True(t, strings.HasPrefix(reply, "ok "), "capture --running answered %q", reply)
	require.Equal(t, int32(2), captures.Load(), "a capture request runs the captures again")

	select {
	case <-done:
		t.Fatal("the pause ended before Enter")
	case <-time.After(100 * time.Millisecond):
	}
	_, err = enterW.Write([]byte("\n"))
	require.NoError(t, err)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Enter did not end the pause")
	}
	waitFor(t, "the sockets to go", func() bool {
		_, err := os.Lstat(l.rec.Path(ConsoleSocket))
		return os.IsNotExist(err)
	})
	r, err := l.Run(context.Background(), "echo after-the-pause")
	require.NoError(t, err, "the shell was taken back for the automation")
	require.Equal(t, "after-the-pause\n", string(r.Output))
}

// TestDebugPauseWithoutTerminalOrShell: no terminal means a bounded wait; a VM without a
// verified shell is still kept, and a capture request says why it cannot be served.
func TestDebugPauseWithoutTerminalOrShell(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"})
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	defer l.Close(context.Background(), nil)

	var out fakeguest.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.KeepForDebug(context.Background(), PauseOptions{Why: "failure", Out: &out, Wait: 2 * time.Second})
	}()
	waitFor(t, "the pause message", func() bool { return strings.Contains(out.String(), "no terminal: waiting 2s") })
	reply := askCaptures(t, l.Dir())
	require.Contains(t, reply, "error this VM has no verified root shell")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the pause did not end after its wait")
	}
}
