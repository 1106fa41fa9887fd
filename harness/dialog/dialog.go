// Package dialog drives full-screen text UIs (the Debian installer's newt dialogs)
// through a screen model fed with a lab's raw serial stream: wait until the screen
// shows something, type a key and wait for its effect, walk a menu's highlight. Every
// wait has a deadline, and every failure carries the screen as it was, because "timed
// out" alone says nothing about which dialog was showing instead.
package dialog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/screen"
)

// Keys as a terminal sends them. The installer runs inside GNU screen, which accepts
// the normal-mode cursor key even after it asked for application mode (ESC [ ? 1 h).
const (
	KeyDown  = "\x1b[B"
	KeyTab   = "\t"
	KeyEnter = "\r"
)

// DebianInstallerAppend is the whole kernel command line: the installer's own defaults
// (priority high, language asked first), with only the console moved to the serial line.
const DebianInstallerAppend = "console=ttyS0,115200n8"

// DebianInstallerHandOff is typed into the installer's shell, which runs inside the GNU screen
// session d-i starts on a serial console (S70menu). GNU screen re-renders its window
// rather than passing bytes through: a line longer than 80 columns is cut into rows, a
// bare LF (the shell package turns onlcr off) moves down without a carriage return so
// consecutive lines run together in the byte stream, and the clock in its status line
// is redrawn every minute into whatever is being printed. Framed output cannot survive
// that. So the same shell process stops GNU screen (client and server, so nobody else
// reads the serial line) and moves its own stdin/stdout/stderr onto ttyS0, which GNU
// screen left in raw mode. Everything after this line runs in the installer's shell,
// talking to the serial line directly.
const DebianInstallerHandOff = "kill -STOP $(pidof screen) && exec </dev/ttyS0 >/dev/ttyS0 2>&1 && stty sane\r"

// UI is one lab's console seen as a screen.
type UI struct {
	lab  *lab.Lab
	scr  *screen.Screen
	step time.Duration // deadline for the screen to react to one key
	dir  string        // screens/ in the run directory
	n    int
}

// New watches l's console as an 80x24 screen; step bounds the screen's reaction to one
// key. Screens saved with Save go to screens/ in the run directory.
func New(l *lab.Lab, step time.Duration) *UI {
	u := &UI{lab: l, step: step, dir: filepath.Join(l.Dir(), "screens")}
	u.scr, _ = l.WatchScreen(80, 24) // for the life of the VM
	return u
}

// Failure wraps err with the screen and leaves a diagnostic in the run directory.
func (u *UI) Failure(what string, err error) error {
	text := u.scr.Text()
	if serr := u.scr.Err(); serr != nil {
		text += "\n(screen model: " + serr.Error() + ")"
	}
	e := fmt.Errorf("%s: %w\nscreen now (highlighted %q):\n%s", what, err, u.scr.Highlighted(), text)
	u.lab.Diagnose("installer-screen", what, err, "screen:\n"+text)
	return e
}

// Save keeps a screen in the run directory, so a passing run also shows what was seen.
func (u *UI) Save(name string) {
	u.n++
	_ = os.MkdirAll(u.dir, 0o755)
	body := fmt.Sprintf("highlighted: %q\n\n%s\n", u.scr.Highlighted(), u.scr.Text())
	_ = os.WriteFile(filepath.Join(u.dir, fmt.Sprintf("%02d-%s.txt", u.n, name)), []byte(body), 0o644)
}

// settle is how long the console must stay silent before a screen is believed. newt
// repaints a moved highlight in pieces (the old item plain, then the new one marked),
// and a condition that holds halfway through a repaint would let the next key go out
// before the installer has handled this one.
const settle = 300 * time.Millisecond

// WaitFor waits, within d, until cond holds for the screen text and the highlighted
// items and the console has been silent for the settle time. The highlight is read
// inside the condition because it is what moves when a key is handled; the text alone
// often does not change.
func (u *UI) WaitFor(ctx context.Context, d time.Duration, what string, cond func(text string, hl []string) bool) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		text, err := u.scr.WaitFor(wctx, func(text string) bool { return cond(text, u.scr.Highlighted()) })
		if err != nil {
			return text, u.Failure("waiting for "+what, err)
		}
		quiet := settle - time.Since(u.lab.LastOutput())
		if quiet <= 0 {
			return text, nil
		}
		select {
		case <-wctx.Done():
			return text, u.Failure("waiting for "+what, fmt.Errorf("the screen never settled: %w", wctx.Err()))
		case <-time.After(quiet):
		}
	}
}

// Press types a key and waits for the screen to show its effect.
func (u *UI) Press(ctx context.Context, key, what string, cond func(text string, hl []string) bool) (string, error) {
	if _, err := u.lab.Type(ctx, key); err != nil {
		return "", u.Failure("typing a key for "+what, err)
	}
	return u.WaitFor(ctx, u.step, what, cond)
}

// SelectItem moves the menu highlight down, one key at a time, onto item. Each key must
// move the highlight (a key that does nothing means the dialog is not the one we think)
// and the walk is bounded, so a menu without the item fails instead of cycling.
func (u *UI) SelectItem(ctx context.Context, item string, maxKeys int) error {
	for i := 0; ; i++ {
		hl := u.scr.Highlighted()
		if slices.Contains(hl, item) {
			return nil
		}
		if i == maxKeys {
			return u.Failure(fmt.Sprintf("selecting %q", item), fmt.Errorf("not highlighted after %d down-arrow keys", maxKeys))
		}
		before := strings.Join(hl, "|")
		if _, err := u.Press(ctx, KeyDown, fmt.Sprintf("the highlight to move off %q", before), func(_ string, now []string) bool {
			return len(now) == 1 && now[0] != before
		}); err != nil {
			return err
		}
	}
}

// OnScreen reports whether every one of subs is on the screen.
func OnScreen(text string, subs ...string) bool {
	for _, s := range subs {
		if !strings.Contains(text, s) {
			return false
		}
	}
	return true
}

// LastRow is the last non-blank row of the screen, trimmed.
func LastRow(text string) string {
	rows := strings.Split(strings.TrimRight(text, " \n"), "\n")
	return strings.TrimSpace(rows[len(rows)-1])
}

// Text is the screen's text now.
func (u *UI) Text() string { return u.scr.Text() }

// Highlighted are the highlighted items on the screen now.
func (u *UI) Highlighted() []string { return u.scr.Highlighted() }
