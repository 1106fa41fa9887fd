// Package console broadcasts a line to every active system console without
// ever blocking on a dead serial line.
package console

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultActivePath lists the kernel's active consoles.
const DefaultActivePath = "/sys/class/tty/console/active"

// DefaultTimeout bounds each console write.
const DefaultTimeout = 2 * time.Second

// Targets returns the console device paths: the whitespace-separated names
// in activePath (made absolute under /dev), then extras, then /dev/console,
// without duplicates. The Python pre-nixos's shell helper read the single line as
// one name; tokens are split here.
func Targets(activePath string, extras ...string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if p == "" {
			return
		}
		if !filepath.IsAbs(p) {
			p = "/dev/" + p
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if b, err := os.ReadFile(activePath); err == nil {
		for _, tok := range strings.Fields(string(b)) {
			add(tok)
		}
	}
	for _, e := range extras {
		add(e)
	}
	add("/dev/console")
	return out
}

// Result is the outcome for one target.
type Result struct {
	Path string `json:"path"`
	OK   bool   `json:"ok"`
	Err  string `json:"error,omitempty"`
}

// Broadcast writes message+"\r\n" to each target. Targets are opened
// O_NONBLOCK|O_NOCTTY and never created (the Python pre-nixos could leave regular
// files in /dev); each write has a deadline, and a hung open or write is
// abandoned after timeout so the caller always returns.
func Broadcast(ctx context.Context, message string, targets []string, timeout time.Duration) []Result {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	out := make([]Result, len(targets))
	for i, t := range targets {
		out[i] = Result{Path: t}
		done := make(chan error, 1)
		go func() { done <- write(t, message+"\r\n", timeout) }()
		timer := time.NewTimer(timeout)
		select {
		case err := <-done:
			if err != nil {
				out[i].Err = err.Error()
			} else {
				out[i].OK = true
			}
		case <-timer.C:
			out[i].Err = fmt.Sprintf("write to %s timed out after %s", t, timeout)
		case <-ctx.Done():
			out[i].Err = ctx.Err().Error()
		}
		timer.Stop()
	}
	return out
}

// AnyOK reports whether at least one write succeeded.
func AnyOK(rs []Result) bool {
	for _, r := range rs {
		if r.OK {
			return true
		}
	}
	return false
}

// ErrNotConsole is returned for a target that is not a character device:
// the active file (or a described tree's copy of it) can name a disk or a
// regular file, and a banner written there would corrupt it.
var ErrNotConsole = errors.New("not a character device; consoles only")

func write(path, data string, timeout time.Duration) error {
	// Checked before opening (an open of a block device is already a side
	// effect) and again on the open file (the name could be swapped between).
	if st, err := os.Stat(path); err != nil {
		return err
	} else if !isConsole(st) {
		return fmt.Errorf("%s: %w (mode %s)", path, ErrNotConsole, st.Mode().Type())
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return err
	} else if !isConsole(st) {
		return fmt.Errorf("%s: %w (mode %s)", path, ErrNotConsole, st.Mode().Type())
	}
	_ = f.SetWriteDeadline(time.Now().Add(timeout))
	_, err = f.WriteString(data)
	return err
}

func isConsole(st os.FileInfo) bool {
	m := st.Mode()
	return m&os.ModeDevice != 0 && m&os.ModeCharDevice != 0
}
