// Package consoletest gives tests a real console: a pseudo-terminal, which
// is a character device (consoles only are written) whose output can be
// read back.
package consoletest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// TTY is the slave side of a pseudo-terminal at Path; what is written
// there is collected from the master side.
type TTY struct {
	Path string
	mu   sync.Mutex
	buf  bytes.Buffer
}

// New opens a pseudo-terminal with output post-processing off (so "\r\n"
// reads back as written) and closes it at the end of the test.
func New(tb testing.TB) *TTY {
	tb.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		tb.Fatalf("consoletest: opening a pseudo-terminal: %v", err)
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), ioctlGetTermios)
	if err == nil {
		tio.Oflag &^= unix.OPOST
		err = unix.IoctlSetTermios(int(slave.Fd()), ioctlSetTermios, tio)
	}
	if err != nil {
		tb.Fatalf("consoletest: setting raw output: %v", err)
	}
	t := &TTY{Path: slave.Name()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			t.mu.Lock()
			t.buf.Write(b[:n])
			t.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	tb.Cleanup(func() {
		// The slave stays open for the whole test: with no slave open the
		// master reads EIO and output written later would be lost.
		slave.Close()
		master.Close()
		<-done
	})
	return t
}

// Output returns what has been read so far.
func (t *TTY) Output() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// WaitFor waits up to 5 s for want to appear and returns the output.
func (t *TTY) WaitFor(tb testing.TB, want string) string {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := t.Output()
		if strings.Contains(out, want) || time.Now().After(deadline) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}
