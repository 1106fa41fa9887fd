package progress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"
)

// fakeClock is safe to move while a ticker reads it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type safeBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTest(live bool) (*Line, *safeBuf, *fakeClock) {
	var b safeBuf
	c := &fakeClock{t: time.Unix(1000, 0)}
	l := New(&b, live)
	l.now = c.now
	return l, &b, c
}

const mmdebstrapOut = `I: automatically chosen mode: root
W: Download is performed unsandboxed as root
I: downloading packages with apt...
I: extracting archives...
I: running --customize-hook in shell: sh -c 'cp -a "/root/.cache/bootlab/fixture/.tmp-x/stage"/etc/. "$1/etc/"' exec /tmp/x
passwd: password changed.
I: success in 93.2 seconds
`

// squashfsOut is mksquashfs's bar as it writes it to a pipe: CR-separated rewrites.
const squashfsOut = "\r[=====          ] 100/400  25%\r[=========      ] 200/400  50%\r[===============] 400/400 100%\n"

func TestPlainLinesWithoutTerminal(t *testing.T) {
	l, b, c := newTest(false)
	start := c.t
	c.t = c.t.Add(75 * time.Second)
	w := l.Mmdebstrap(start)
	_, err := io.WriteString(w, mmdebstrapOut)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	out := b.String()
	require.NotContains(t, out, "\r", "no terminal: no carriage returns")
	require.NotContains(t, out, "\x1b", "no terminal: no escape sequences")
	require.Equal(t, []string{
		"mmdebstrap: automatically chosen mode: root (1m15s)",
		"mmdebstrap: downloading packages with apt... (1m15s)",
		"mmdebstrap: extracting archives... (1m15s)",
		"mmdebstrap: running --customize-hook (1m15s)",
		"mmdebstrap: success in 93.2 seconds (1m15s)",
	}, strings.Split(strings.TrimSpace(out), "\n"), "one line per phase, warnings and hook output left to the log")

	// The squashfs bar: the same step repeats at most once every 10 s.
	b.b.Reset()
	w = l.Squashfs("root filesystem", start)
	_, _ = io.WriteString(w, squashfsOut)
	require.NoError(t, w.Close())
	require.Equal(t, "mksquashfs root filesystem: 25% (100 of 400 files and blocks, 1m15s)\n", b.String(),
		"plain mode throttles repeats of one step")
	c.t = c.t.Add(11 * time.Second)
	w = l.Squashfs("root filesystem", start)
	_, _ = io.WriteString(w, "\r[====] 400/400 100%\n")
	require.NoError(t, w.Close())
	require.Contains(t, b.String(), "mksquashfs root filesystem: 100% (400 of 400 files and blocks, 1m26s)\n")
	l.Done("squashfs done")
	require.True(t, strings.HasSuffix(b.String(), "squashfs done\n"))
}

func TestLiveLineOnTerminal(t *testing.T) {
	l, b, c := newTest(true)
	w := l.Squashfs("config", c.t)
	_, _ = io.WriteString(w, squashfsOut)
	require.NoError(t, w.Close())
	require.Equal(t,
		"\r\x1b[Kmksquashfs config: 25% (100 of 400 files and blocks, 0s)"+
			"\r\x1b[Kmksquashfs config: 50% (200 of 400 files and blocks, 0s)"+
			"\r\x1b[Kmksquashfs config: 100% (400 of 400 files and blocks, 0s)", b.String(),
		"every update rewrites the one line in place, none is dropped, no newline until done")
	l.Done("config squashfs done")
	require.True(t, strings.HasSuffix(b.String(), "\r\x1b[Kconfig squashfs done\n"))
	l.Update("wait", "waiting (1s)")
	_, err := io.WriteString(l, "bootlab: login_prompt 3.0s\n")
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(b.String(), "\r\x1b[Kwaiting (1s)\r\x1b[Kbootlab: login_prompt 3.0s\n"),
		"ordinary output clears the live line first instead of being glued to it")
	l.Update("x", strings.Repeat("y", 300))
	require.LessOrEqual(t, len(b.String()[strings.LastIndex(b.String(), "\r"):]), 4+120, "a live line never wraps")
}

// TestForDetectsTerminal: For chooses the live line on a real pty and plain lines on a
// pipe; what reaches the pty's reader is the rewritten line.
func TestForDetectsTerminal(t *testing.T) {
	ptm, pts, err := pty.Open()
	require.NoError(t, err)
	defer ptm.Close()
	defer pts.Close()
	l := For(pts)
	require.True(t, l.live, "a pty is a terminal")
	l.Update("wait", "waiting for login (3s)")
	l.Done("logged in")
	buf := make([]byte, 256)
	_ = ptm.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	for !bytes.Contains(got, []byte("logged in")) {
		n, err := ptm.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
	}
	require.Contains(t, string(got), "\r\x1b[Kwaiting for login (3s)\r\x1b[Klogged in")

	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.False(t, For(w).live, "a pipe is not")
	require.False(t, For(&bytes.Buffer{}).live, "nor a buffer")
}

func TestTickerReportsElapsed(t *testing.T) {
	var b safeBuf
	l := New(&b, true)
	stop := l.Ticker("wait", func(d time.Duration) string { return "waiting for storage (" + Elapsed(d) + ")" })
	require.Eventually(t, func() bool { return strings.Contains(b.String(), "waiting for storage (1s)") }, 5*time.Second, 50*time.Millisecond)
	stop()
	stop() // harmless twice
	var nilLine *Line
	nilLine.Update("a", "b")
	nilLine.Done("c")
	nilLine.Ticker("a", func(time.Duration) string { return "" })()
	require.Equal(t, "2m05s", Elapsed(125*time.Second))
	n, err := nilLine.Write([]byte("x"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	// The image builds hand mmdebstrap's and mksquashfs's output to these writers
	// whether or not a line is set; a cold fixture build without one (go test
	// ./scenarios) panicked on the first phase line.
	for _, w := range []io.WriteCloser{nilLine.Mmdebstrap(time.Now()), nilLine.Squashfs("root", time.Now())} {
		_, err := io.WriteString(w, "I: finding correct signed-by value...\n 12/100  12%\r")
		require.NoError(t, err)
		require.NoError(t, w.Close())
	}
}

// TestRealMksquashfsBar: the parser matches the bar the installed mksquashfs writes to
// a pipe with -quiet (and without -no-progress), as artifacts/images runs it.
func TestRealMksquashfsBar(t *testing.T) {
	_, err := exec.LookPath("mksquashfs")
	require.NoError(t, err, "mksquashfs is needed: apt-get install squashfs-tools")
	src := t.TempDir()
	for i := 0; i < 50; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), bytes.Repeat([]byte{byte(i)}, 9000), 0o644))
	}
	var b safeBuf
	l := New(&b, true)
	w := l.Squashfs("test", time.Now())
	cmd := exec.Command("mksquashfs", src, filepath.Join(t.TempDir(), "out.sqfs"), "-noappend", "-quiet")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	require.NoError(t, cmd.Run(), "%s", stderr.String())
	require.NoError(t, w.Close())
	require.Contains(t, b.String(), "\r\x1b[Kmksquashfs test: 100% (")
}

// TestWaitShowsElapsedAndEnds: a wait found in the context ticks its elapsed time on the
// live line and ends with a line that stays; without a terminal the same waits are plain
// lines (start, then the end with its time); no line in the context discards.
func TestWaitShowsElapsedAndEnds(t *testing.T) {
	l, b, c := newTest(true)
	ctx := WithLine(context.Background(), l)
	require.Same(t, l, FromContext(ctx))
	end := FromContext(ctx).Wait("waiting for unit pre-nixos.service to be active")
	require.Eventually(t, func() bool {
		return strings.Contains(b.String(), "\r\x1b[Kwaiting for unit pre-nixos.service to be active (0s)")
	}, 5*time.Second, 10*time.Millisecond)
	c.add(3 * time.Second)
	require.Eventually(t, func() bool {
		return strings.Contains(b.String(), "\r\x1b[Kwaiting for unit pre-nixos.service to be active (3s)")
	}, 5*time.Second, 10*time.Millisecond, "the live line ticks the elapsed time")
	end(nil)
	end(errors.New("ignored: a wait ends once"))
	require.True(t, strings.HasSuffix(b.String(), "\r\x1b[Kwaiting for unit pre-nixos.service to be active: done in 3s\n"), "%q", b.String())

	p, pb, pc := newTest(false)
	end = p.Wait("waiting for an IPv4 address on lan")
	pc.add(75 * time.Second)
	end(errors.New("timed out"))
	require.Equal(t, "waiting for an IPv4 address on lan (0s)\nwaiting for an IPv4 address on lan: failed after 1m15s\n", pb.String(),
		"plain lines: no escape sequences, the end says how long")

	FromContext(context.Background()).Wait("nothing to show")(nil) // no line: discarded
}
