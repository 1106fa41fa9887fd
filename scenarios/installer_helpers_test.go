package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/screen"
)

// Keys as a terminal sends them. The installer runs inside GNU screen, which accepts
// the normal-mode cursor key even after it asked for application mode (ESC [ ? 1 h).
const (
	keyDown  = "\x1b[B"
	keyTab   = "\t"
	keyEnter = "\r"
)

// installerUI drives the Debian installer's newt dialogs through a screen model fed
// with the raw serial stream. Every wait has a deadline, and every failure carries the
// screen as it was, because "timed out" alone says nothing about which dialog the
// installer was showing instead.
type installerUI struct {
	lab  *lab.Lab
	con  *console.Console
	scr  *screen.Screen
	step time.Duration // deadline for the screen to react to one key
	dir  string        // screens/ in the run directory
	n    int
}

func newInstallerUI(l *lab.Lab, step time.Duration) *installerUI {
	con := l.Console()
	u := &installerUI{lab: l, con: con, step: step, dir: filepath.Join(l.Dir(), "screens")}
	u.scr = screen.New(80, 24, screen.WithReplies(con.Replier()))
	con.AddTee(u.scr)
	return u
}

// failure wraps err with the screen and leaves a diagnostic in the run directory.
func (u *installerUI) failure(what string, err error) error {
	text := u.scr.Text()
	if serr := u.scr.Err(); serr != nil {
		text += "\n(screen model: " + serr.Error() + ")"
	}
	e := fmt.Errorf("%s: %w\nscreen now (highlighted %q):\n%s", what, err, u.scr.Highlighted(), text)
	u.lab.Diagnose("installer-screen", what, err, "screen:\n"+text)
	return e
}

// save keeps a screen in the run directory, so a passing run also shows what was seen.
func (u *installerUI) save(name string) {
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

// waitFor waits, within d, until cond holds for the screen text and the highlighted
// items and the console has been silent for the settle time. The highlight is read
// inside the condition because it is what moves when a key is handled; the text alone
// often does not change.
func (u *installerUI) waitFor(ctx context.Context, d time.Duration, what string, cond func(text string, hl []string) bool) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		text, err := u.scr.WaitFor(wctx, func(text string) bool { return cond(text, u.scr.Highlighted()) })
		if err != nil {
			return text, u.failure("waiting for "+what, err)
		}
		quiet := settle - time.Since(u.con.LastOutput())
		if quiet <= 0 {
			return text, nil
		}
		select {
		case <-wctx.Done():
			return text, u.failure("waiting for "+what, fmt.Errorf("the screen never settled: %w", wctx.Err()))
		case <-time.After(quiet):
		}
	}
}

// press types a key and waits for the screen to show its effect.
func (u *installerUI) press(ctx context.Context, key, what string, cond func(text string, hl []string) bool) (string, error) {
	if err := u.con.Send(ctx, key); err != nil {
		return "", u.failure("typing a key for "+what, err)
	}
	return u.waitFor(ctx, u.step, what, cond)
}

// selectItem moves the menu highlight down, one key at a time, onto item. Each key must
// move the highlight (a key that does nothing means the dialog is not the one we think)
// and the walk is bounded, so a menu without the item fails instead of cycling.
func (u *installerUI) selectItem(ctx context.Context, item string, maxKeys int) error {
	for i := 0; ; i++ {
		hl := u.scr.Highlighted()
		if slices.Contains(hl, item) {
			return nil
		}
		if i == maxKeys {
			return u.failure(fmt.Sprintf("selecting %q", item), fmt.Errorf("not highlighted after %d down-arrow keys", maxKeys))
		}
		before := strings.Join(hl, "|")
		if _, err := u.press(ctx, keyDown, fmt.Sprintf("the highlight to move off %q", before), func(_ string, now []string) bool {
			return len(now) == 1 && now[0] != before
		}); err != nil {
			return err
		}
	}
}

// onScreen reports whether every one of subs is on the screen.
func onScreen(text string, subs ...string) bool {
	for _, s := range subs {
		if !strings.Contains(text, s) {
			return false
		}
	}
	return true
}

// lastRow is the last non-blank row of the screen, trimmed.
func lastRow(text string) string {
	rows := strings.Split(strings.TrimRight(text, " \n"), "\n")
	return strings.TrimSpace(rows[len(rows)-1])
}
