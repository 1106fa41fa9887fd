package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func pair(t *testing.T, opts Options) (*Console, *os.File) {
	t.Helper()
	m, s, err := OpenPTY()
	require.NoError(t, err)
	c := New(m, opts)
	t.Cleanup(func() {
		s.Close()
		m.Close()
		<-c.Done()
	})
	return c, s
}

func TestExpectAcrossSplitWrites(t *testing.T) {
	c, guest := pair(t, Options{})
	go func() {
		for _, part := range []string{"boot...\r\nmini lo", "gin", ": "} {
			io.WriteString(guest, part)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m, err := c.Expect(ctx, 0, Regexp("login", `login: $`))
	require.NoError(t, err)
	require.Equal(t, "login: ", m.Text)
	require.Equal(t, "boot...\r\nmini ", m.Before)
}

func TestExpectTotalDeadlineOnChattyConsole(t *testing.T) {
	// go-expect's timeout restarts on every rune, so this wait would never end there.
	c, guest := pair(t, Options{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			io.WriteString(guest, "[ 1.0] chatter\r\n")
			time.Sleep(2 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := c.Expect(ctx, 0, Literal("never", "login: "))
	var te *TimeoutError
	require.True(t, errors.As(err, &te), "got %v", err)
	require.Less(t, time.Since(began), 2*time.Second)
	require.Contains(t, te.Tail, "chatter", "the error carries what the console showed")
}

func TestEarliestPatternWins(t *testing.T) {
	c, guest := pair(t, Options{})
	io.WriteString(guest, "Password: then $ ")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := c.Expect(ctx, 0, Literal("shell", "$ "), Literal("password", "Password: "))
	require.NoError(t, err)
	require.Equal(t, "password", m.Name)
	// A later wait from past the first match finds the second.
	m2, err := c.Expect(ctx, m.End, Literal("shell", "$ "), Literal("password", "Password: "))
	require.NoError(t, err)
	require.Equal(t, "shell", m2.Name)
}

func TestClosedLineEndsWaitAtOnce(t *testing.T) {
	c, guest := pair(t, Options{})
	io.WriteString(guest, "qemu-system-x86_64: Could not open image\r\n")
	time.Sleep(20 * time.Millisecond)
	guest.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	_, err := c.Expect(ctx, 0, Literal("login", "login:"))
	var ce *ClosedError
	require.True(t, errors.As(err, &ce), "got %v", err)
	require.True(t, errors.Is(err, ErrClosed))
	require.Contains(t, ce.Tail, "Could not open image")
	require.Less(t, time.Since(began), time.Second)
}

func TestLogsKeepDirectionsApart(t *testing.T) {
	serial, transcript := &syncBuf{}, &syncBuf{}
	c, guest := pair(t, Options{SerialLog: serial, Transcript: transcript})
	require.NoError(t, c.Send(context.Background(), "secret-typed\n"))
	buf := make([]byte, 64)
	n, err := guest.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "secret-typed\n", string(buf[:n]), "raw mode: typed bytes arrive unchanged")
	io.WriteString(guest, "guest-said\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = c.Expect(ctx, 0, Literal("said", "guest-said"))
	require.NoError(t, err)
	require.Equal(t, "guest-said\r\n", serial.String(), "serial.log holds guest bytes only")
	tr := transcript.String()
	require.Contains(t, tr, `> "secret-typed\n"`)
	require.Contains(t, tr, `< "guest-said\r\n"`)
	require.Less(t, strings.Index(tr, "secret-typed"), strings.Index(tr, "guest-said"))
}

func TestAnswersCursorPositionQuerySplitAcrossReads(t *testing.T) {
	c, guest := pair(t, Options{AnswerDSR: true})
	io.WriteString(guest, "\x1b[")
	time.Sleep(10 * time.Millisecond)
	io.WriteString(guest, "6n")
	reply := make([]byte, 16)
	guest.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := guest.Read(reply)
	require.NoError(t, err)
	require.Regexp(t, `^\x1b\[[0-9]+;[0-9]+R$`, string(reply[:n]))
	_ = c
}

func TestWindowOverflowIsAnError(t *testing.T) {
	c, guest := pair(t, Options{Window: 1024})
	io.WriteString(guest, strings.Repeat("x", 4096))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for c.Pos() < 4096 {
		require.NoError(t, c.WaitBeyond(ctx, c.Pos()))
	}
	_, _, err := c.Read(0)
	require.ErrorContains(t, err, "window overflow")
	data, end, err := c.Read(c.Pos() - 10)
	require.NoError(t, err)
	require.Equal(t, int64(4096), end)
	require.Len(t, data, 10)
}

func BenchmarkExpectLargeBootLog(b *testing.B) {
	// Matching stays linear: a 4 MiB boot log before the prompt.
	chunk := []byte(strings.Repeat("[    1.000000] systemd[1]: Starting something...\r\n", 100))
	for i := 0; i < b.N; i++ {
		r, w := io.Pipe()
		c := New(struct {
			io.Reader
			io.Writer
		}{r, io.Discard}, Options{})
		go func() {
			for n := 0; n < (4<<20)/len(chunk); n++ {
				w.Write(chunk)
			}
			w.Write([]byte("mini login: "))
		}()
		if _, err := c.Expect(context.Background(), 0, Regexp("login", `login: $`)); err != nil {
			b.Fatal(err)
		}
		w.Close()
		<-c.Done()
	}
	b.SetBytes(4 << 20)
}

// Issue 19 item 10: login and sudo passwords were written verbatim to transcript.log.
// The guest must still receive the secret byte for byte; the transcript shows only
// that a secret line was sent.
func TestSendSecretIsRedactedInTranscript(t *testing.T) {
	var tr syncBuf
	c, guest := pair(t, Options{Transcript: &tr})
	require.NoError(t, MakeRaw(guest)) // no echo, as at a real password prompt
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	const pw = "hunter2-$ecret"
	require.NoError(t, c.Send(ctx, "root\n"))
	require.NoError(t, c.SendSecret(ctx, pw+"\n"))
	got := make([]byte, len("root\n"+pw+"\n"))
	_, err := io.ReadFull(guest, got)
	require.NoError(t, err)
	require.Equal(t, "root\n"+pw+"\n", string(got), "the guest receives the secret unchanged")
	log := tr.String()
	require.NotContains(t, log, "hunter2")
	require.Contains(t, log, `> "root\n"`)
	require.Contains(t, log, `> "`+Redacted+`\n"`)
}
