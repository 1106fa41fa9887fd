package shell_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/ansi"
	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/shell"
)

// slowTerminal answers the guest's cursor-position queries like a terminal whose
// answer takes a while to arrive (an attached person's terminal, a loaded host): each
// report is sent delay after the query was seen.
type slowTerminal struct {
	con   *console.Console
	delay atomic.Int64
	mu    sync.Mutex
	carry []byte
}

func (s *slowTerminal) Write(p []byte) (int, error) {
	s.mu.Lock()
	joined := append(s.carry, p...)
	n := bytes.Count(joined, []byte("\x1b[6n"))
	s.carry = append([]byte(nil), joined[max(0, len(joined)-3):]...)
	s.mu.Unlock()
	for i := 0; i < n; i++ {
		d := time.Duration(s.delay.Load())
		go func() {
			time.Sleep(d)
			_ = s.con.Send(context.Background(), "\x1b[24;1R")
		}()
	}
	return len(p), nil
}

// lineEditRig is a busybox-like fake guest (line editor while echo is on, cooked mode
// after stty -echo) whose cursor queries a slowTerminal answers instead of the console.
func lineEditRig(t *testing.T) (*rig, *slowTerminal) {
	t.Helper()
	master, slave, err := console.OpenPTY()
	require.NoError(t, err)
	serial := &fakeguest.Buffer{}
	term := &slowTerminal{}
	con := console.New(master, console.Options{Normalizer: &ansi.Normalizer{}, SerialLog: serial, Tee: term})
	term.con = con
	g := fakeguest.Start(slave, fakeguest.Behaviour{Login: "root-shell", LineEdit: true}, func() { slave.Close() })
	t.Cleanup(func() {
		slave.Close()
		master.Close()
		<-con.Done()
		<-g.Done()
	})
	return &rig{con: con, guest: g, serial: serial}, term
}

// TestLateCursorReportAfterTakeBack is issue 26's attach failure on the fake guest: the
// shell is handed to a person (echo on: busybox's line editor asks ESC[6n after its
// prompt) and taken back at once, as a capture request right after a detach does. The
// report arrives 150 ms after the query. Typed before it, the setup line's `stty -echo`
// left the report in cooked-mode input, glued to the front of the next framed command.
// TakeBack now waits for the line to settle (every query answered, then quiet).
func TestLateCursorReportAfterTakeBack(t *testing.T) {
	r, term := lineEditRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sh, err := shell.Login(ctx, r.con, shell.Profile{Name: "root"}, fast())
	require.NoError(t, err)
	term.delay.Store(int64(150 * time.Millisecond))
	for i := 0; i < 2; i++ {
		require.NoError(t, sh.HandOver(ctx))
		require.NoError(t, sh.TakeBack(ctx))
		// The next command comes after the late report has arrived (in the VM test it
		// was the channel's `__blc`, after the framed `id -u` and its prompt).
		time.Sleep(400 * time.Millisecond)
		res, err := sh.Run(ctx, "echo back", shell.Timeout(5*time.Second))
		require.NoError(t, err, "round %d; console:\n%s", i, r.con.Tail(15))
		require.Equal(t, "back\n", string(res.Output))
	}
	require.Positive(t, r.guest.CursorReports(), "the line editor got its reports")
}

// TestRejectedLineFailsAtOnce: a report that did land in cooked-mode input makes the
// shell refuse the framed line (`-sh: ^[[24;1R__bl: not found`); the command fails at
// once with those words instead of waiting its whole timeout for a BEGIN marker.
func TestRejectedLineFailsAtOnce(t *testing.T) {
	r, _ := lineEditRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sh, err := shell.Login(ctx, r.con, shell.Profile{Name: "root"}, fast())
	require.NoError(t, err)
	for _, junk := range []string{"\x1b[24;1R", "'"} {
		require.NoError(t, r.con.Send(ctx, junk))
		began := time.Now()
		_, err = sh.Run(ctx, "echo never", shell.Timeout(20*time.Second))
		var rej *shell.RejectedError
		require.True(t, errors.As(err, &rej), "got %v", err)
		require.Less(t, time.Since(began), 3*time.Second, "reported at once, not at the timeout")
		require.Contains(t, rej.Words, "__bl: not found", "the shell's own words")
		require.Contains(t, err.Error(), `the shell rejected the line that runs "echo never"`)
		// The shell is fine: only that line was lost.
		res, err := sh.Run(ctx, "echo again", shell.Timeout(5*time.Second))
		require.NoError(t, err)
		require.Equal(t, "again\n", string(res.Output))
	}
	require.False(t, strings.Contains(r.con.Tail(5), "timed out"))
}
