package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/bootlab/bootlab/harness/console"
)

// ConsoleSocket is the name, in the run directory, of the link to the console socket.
const ConsoleSocket = "console.sock"

// ServeConsole serves the guest console on a unix socket so a person (bootlab attach)
// or a test can type into it while automation waits. The socket itself lives in a
// private temporary directory (socket paths are limited to 108 bytes) and the run
// directory gets a symlink to it. Each connection sees everything the guest prints from
// then on; what it sends is typed to the guest. The server stops when ctx ends.
func (l *Lab) ServeConsole(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp("", "bootlab-console-")
	if err != nil {
		return "", fmt.Errorf("creating the console socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", err
	}
	sock := filepath.Join(dir, "console.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", fmt.Errorf("listening on the console socket: %w", err)
	}
	link := l.rec.Path(ConsoleSocket)
	_ = os.Remove(link)
	if err := os.Symlink(sock, link); err != nil {
		ln.Close()
		return "", fmt.Errorf("linking the console socket into the run directory: %w", err)
	}
	var wg sync.WaitGroup
	go func() {
		<-ctx.Done()
		ln.Close()
		wg.Wait()
		os.Remove(link)
		os.RemoveAll(dir)
	}()
	con := l.vm.Console()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				l.log.Info("lab.attach", "remote", "console socket")
				w, stop := nonBlocking(c)
				remove := con.AddTee(w)
				defer func() { remove(); stop() }()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					// The console answers the guest's cursor queries itself: a terminal's
					// own answer would be a second one, typed into the shell.
					if in := console.StripCursorReports(buf[:n]); len(in) > 0 {
						if serr := con.Send(ctx, string(in)); serr != nil {
							return
						}
					}
					if err != nil {
						if !errors.Is(err, io.EOF) {
							l.log.Info("lab.detach", "error", err.Error())
						}
						return
					}
				}
			}()
		}
	}()
	return link, nil
}

// nonBlocking drops output for a client that stops reading, so an idle attached
// terminal can never stall the console drain (and with it the guest).
func nonBlocking(c net.Conn) (io.Writer, func()) {
	ch := make(chan []byte, 256)
	var once sync.Once
	stop := func() { once.Do(func() { close(ch) }) }
	go func() {
		for b := range ch {
			if _, err := c.Write(b); err != nil {
				for range ch {
				}
				return
			}
		}
	}()
	var mu sync.Mutex
	closed := false
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return len(p), nil
		}
		select {
		case ch <- append([]byte(nil), p...):
		default:
		}
		return len(p), nil
	})
	return w, func() {
		mu.Lock()
		closed = true
		mu.Unlock()
		stop()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// CaptureSocket is the name, in the run directory, of the link to the socket through
// which `bootlab capture --running DIR` asks a paused run for fresh captures.
const CaptureSocket = "capture.sock"

// ServeCaptures lets another process ask this (paused) run to take capture sets now:
// each connection runs capture() and gets back one line, "ok <captures dir>" or
// "error <why>". The capture runs on this process's shell, the only one allowed to
// drive the console, so requests are serialised with everything else it does.
func (l *Lab) ServeCaptures(ctx context.Context, capture func(context.Context) error) (string, error) {
	dir, err := os.MkdirTemp("", "bootlab-capture-")
	if err != nil {
		return "", fmt.Errorf("creating the capture socket directory: %w", err)
	}
	sock := filepath.Join(dir, "capture.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", fmt.Errorf("listening on the capture socket: %w", err)
	}
	link := l.rec.Path(CaptureSocket)
	_ = os.Remove(link)
	if err := os.Symlink(sock, link); err != nil {
		ln.Close()
		return "", fmt.Errorf("linking the capture socket into the run directory: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
		os.Remove(link)
		os.RemoveAll(dir)
	}()
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				mu.Lock()
				defer mu.Unlock()
				if err := capture(ctx); err != nil {
					fmt.Fprintf(c, "error %v\n", err)
					return
				}
				fmt.Fprintf(c, "ok %s\n", l.rec.Path("captures"))
			}()
		}
	}()
	return link, nil
}
