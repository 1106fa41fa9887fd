package main

import (
	"bytes"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/harness/lab"
)

// fakeConsole stands in for a paused run's console socket: it records what attach sends
// and can print to it, or hang up as a pause that ends does.
type fakeConsole struct {
	dir  string
	got  fakeguest.Buffer
	conn chan net.Conn
}

func newFakeConsole(t *testing.T) *fakeConsole {
	t.Helper()
	f := &fakeConsole{dir: t.TempDir(), conn: make(chan net.Conn, 1)}
	sockDir, err := os.MkdirTemp("", "bl-att-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "c.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	require.NoError(t, os.Symlink(sock, filepath.Join(f.dir, lab.ConsoleSocket)))
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		f.conn <- c
		buf := make([]byte, 1024)
		for {
			n, err := c.Read(buf)
			f.got.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	return f
}

func (f *fakeConsole) waitGot(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(f.got.String(), want) {
		require.True(t, time.Now().Before(deadline), "the console got %q, not %q", f.got.String(), want)
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAttachRawModeAndRestore drives `bootlab attach` on a pty against a stand-in
// console socket (no VM): the terminal goes raw, so what is typed reaches the console
// byte for byte (Ctrl-C and a CR included: in a guest they interrupt and end the line
// there, not in bootlab), the console's output is shown, Ctrl-] detaches and the
// terminal's settings come back exactly. A console that hangs up (the pause ended)
// also ends attach with the terminal restored.
func TestAttachRawModeAndRestore(t *testing.T) {
	bin := buildBootlab(t)
	for _, end := range []string{"ctrl-]", "hang-up"} {
		t.Run(end, func(t *testing.T) {
			con := newFakeConsole(t)
			term := newPTYConsole(t)
			before := term.termios(t)
			require.NotZero(t, before.Lflag&unix.ICANON, "a fresh pty starts in canonical mode")
			att := term.start(t, bin, "attach", con.dir)
			term.expectWithin(t, 20*time.Second, `attached to .*Ctrl-\] detaches`)
			raw := term.termios(t)
			require.Zero(t, raw.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG), "raw mode: no line editing, echo or signals")
			require.Zero(t, raw.Iflag&(unix.ICRNL|unix.IXON), "raw mode: CR and Ctrl-S/Ctrl-Q pass through")

			_, err := term.Send("ls\x03\r")
			require.NoError(t, err)
			con.waitGot(t, "ls\x03\r")
			var c net.Conn
			select {
			case c = <-con.conn:
			case <-time.After(5 * time.Second):
				t.Fatal("attach did not connect")
			}
			_, err = c.Write([]byte("guest-says-hello\r\n"))
			require.NoError(t, err)
			term.expectWithin(t, 20*time.Second, `guest-says-hello`)
			require.Nil(t, att.ProcessState, "Ctrl-C went to the console, it did not end attach")

			if end == "ctrl-]" {
				_, err = term.Send("after\x1dnot-sent")
				require.NoError(t, err)
			} else {
				c.Close()
			}
			term.expectWithin(t, 20*time.Second, `bootlab: detached`)
			require.Equal(t, 0, waitExit(t, att, 20*time.Second, term), "attach exits 0")
			if end == "ctrl-]" {
				con.waitGot(t, "after")
				require.False(t, bytes.Contains([]byte(con.got.String()), []byte("not-sent")), "nothing after Ctrl-] is sent")
			}
			after := term.termios(t)
			require.Equal(t, *before, *after, "the terminal's settings are restored")
		})
	}
}
