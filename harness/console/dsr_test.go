package console

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gate is a tee that holds the drain, when the prompt arrives, until the waiter has
// typed: what the console sends before publishing the chunk reaches the guest first,
// what it sends after the tees comes behind the waiter's line.
type gate struct {
	typed chan struct{}
	once  sync.Once
}

func (g *gate) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "# ") {
		g.once.Do(func() {
			select {
			case <-g.typed:
			case <-time.After(2 * time.Second):
			}
		})
	}
	return len(p), nil
}

// TestCursorQueryAnsweredBeforeWaitersWake: busybox prints its prompt and ESC[6n
// together; a waiter that types as soon as it sees the prompt must find the report
// already on its way, or the report lands behind its line (issue 26).
func TestCursorQueryAnsweredBeforeWaitersWake(t *testing.T) {
	g := &gate{typed: make(chan struct{})}
	c, guest := pair(t, Options{AnswerDSR: true, Tee: g})
	_, err := io.WriteString(guest, "/ # \x1b[6n")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Expect(ctx, 0, Literal("prompt", "# "))
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, "typed\n"))
	close(g.typed)
	got := make([]byte, 0, 64)
	buf := make([]byte, 64)
	for !strings.Contains(string(got), "typed\n") {
		_ = guest.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := guest.Read(buf)
		require.NoError(t, err, "so far %q", got)
		got = append(got, buf[:n]...)
	}
	require.Equal(t, CursorReport+"typed\n", string(got), "the report comes before what the harness typed")
}

// TestSettleWaitsForTheReportAndQuiet: Settle returns only once every query has had its
// report and the line has been quiet; a query nobody answers keeps it waiting.
func TestSettleWaitsForTheReportAndQuiet(t *testing.T) {
	c, guest := pair(t, Options{})
	_, err := io.WriteString(guest, "# \x1b[6n")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Expect(ctx, 0, Literal("prompt", "# "))
	require.NoError(t, err)
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err = c.Settle(short, 50*time.Millisecond)
	cancelShort()
	require.ErrorContains(t, err, "1 cursor-position queries unanswered")
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = c.Send(context.Background(), "\x1b[24;80R")
	}()
	began := time.Now()
	require.NoError(t, c.Settle(ctx, 200*time.Millisecond))
	require.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond, "the report, then 200 ms of quiet")
}

func TestStripCursorReports(t *testing.T) {
	for in, want := range map[string]string{
		"ls\n":                   "ls\n",
		"\x1b[24;80R":            "",
		"a\x1b[1;1Rb\x1b[12;3Rc": "abc",
		"\x1b[A\x1b[6n":          "\x1b[A\x1b[6n", // arrow keys and the rest pass
	} {
		require.Equal(t, want, string(StripCursorReports([]byte(in))), "%q", in)
	}
}
