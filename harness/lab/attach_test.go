package lab

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/vm"
)

// sunPathMax is the size of sockaddr_un.sun_path on Linux, terminating NUL included.
const sunPathMax = 108

// TestPauseSocketsUnderALongRunDirectory: a paused run in a deep notes directory (a
// t.TempDir() in a test, a project's docs/work-notes) still serves its console and its
// capture socket. The sockets live in a short private directory and the run directory
// holds links to them: a socket at the link's own path could not be bound (sun_path is
// 108 bytes).
func TestPauseSocketsUnderALongRunDirectory(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"})
	cfg.conf.Notes = filepath.Join(t.TempDir(), strings.Repeat("a-deep-notes-directory/", 6))
	require.NoError(t, os.MkdirAll(cfg.conf.Notes, 0o755))
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	defer l.Close(context.Background(), nil)
	require.Greater(t, len(l.rec.Path(CaptureSocket)), sunPathMax, "the run directory is too deep for a socket in it")
	_, err = l.Login(context.Background())
	require.NoError(t, err)

	enterR, enterW := io.Pipe()
	var out fakeguest.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.KeepForDebug(context.Background(), PauseOptions{Why: "pause after login", Out: &out, Enter: enterR, Wait: time.Hour,
			Captures: func(ctx context.Context) error { _, _, err := l.Exec(ctx, "echo captured"); return err }})
	}()
	waitFor(t, "the pause message", func() bool {
		return strings.Contains(out.String(), "press Enter here to continue") || strings.Contains(out.String(), "cannot serve")
	})
	require.NotContains(t, out.String(), "cannot serve the console", "the pause said:\n%s", out.String())

	target, err := os.Readlink(l.rec.Path(ConsoleSocket))
	require.NoError(t, err, "the run directory links the console socket")
	require.Less(t, len(target), sunPathMax)
	c, err := dialUnix(target)
	require.NoError(t, err, "bootlab attach connects")
	// What is typed reaches the guest's shell (the fake guest answers an unknown
	// command as a shell would) and what it prints comes back.
	_, err = c.Write([]byte("attached\n"))
	require.NoError(t, err)
	var seen strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), "attached: not found") {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		require.NoError(t, err, "reading the console; so far %q", seen.String())
		seen.Write(buf[:n])
	}
	c.Close()

	reply := askCaptures(t, l.Dir())
	require.True(t, strings.HasPrefix(reply, "ok "), "capture --running under a deep run directory answered %q", reply)

	_, err = enterW.Write([]byte("\n"))
	require.NoError(t, err)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Enter did not end the pause")
	}
}

// TestAttachedTerminalsReportsAreDropped: the console answers the guest's cursor
// queries itself, so the report an attached terminal sends is not passed on (it would be
// a second answer, typed into the shell, issue 26); everything else the person types is.
func TestAttachedTerminalsReportsAreDropped(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "root-shell", LineEdit: true})
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	defer l.Close(context.Background(), nil)
	_, err = l.Login(context.Background())
	require.NoError(t, err)
	enterR, enterW := io.Pipe()
	var out fakeguest.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.KeepForDebug(context.Background(), PauseOptions{Why: "pause", Out: &out, Enter: enterR, Wait: time.Hour,
			Captures: func(context.Context) error { return nil }})
	}()
	waitFor(t, "the pause message", func() bool { return strings.Contains(out.String(), "press Enter") })
	target, err := os.Readlink(l.rec.Path(ConsoleSocket))
	require.NoError(t, err)
	c, err := dialUnix(target)
	require.NoError(t, err)
	_, err = c.Write([]byte("\x1b[24;80Rtyped-by-a-person\n"))
	require.NoError(t, err)
	var seen strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), "typed-by-a-person: not found") {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		require.NoError(t, err, "so far %q", seen.String())
		seen.Write(buf[:n])
	}
	c.Close()
	_, err = enterW.Write([]byte("\n"))
	require.NoError(t, err)
	<-done
	res, status, err := l.Exec(context.Background(), "echo taken back")
	require.NoError(t, err)
	require.Equal(t, 0, status)
	require.Equal(t, "taken back\n", string(res))
	transcript, err := os.ReadFile(l.rec.Path(vm.TranscriptLog))
	require.NoError(t, err)
	require.Contains(t, string(transcript), "typed-by-a-person")
	require.NotContains(t, string(transcript), `[24;80R`, "the terminal's report never reached the guest")
	require.Contains(t, string(transcript), `[24;1R`, "the console's own answers did")
}
