package shell

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/frame"
)

// The shell-death watchdog. A command that ends the shell running it (`exit 3`, `exec
// true`, `kill -9 $$`, `reboot -f`) sends no END marker, and used to be found out only
// at the command's timeout (5 minutes for `bootlab run --cmd`). While a command runs,
// the console is watched for what a shell's end looks like:
//
//   - the exit trap's marker (frame.ExitTrap), with the shell's status: at once;
//   - a reboot or power-off banner from the kernel or the firmware: at once;
//   - a prompt that is not this shell's own: the shell it was started from (each
//     configured shell has its own prompt, see promptFor), a login prompt (a getty
//     after the login shell ended) or an image's unconfigured prompt (a respawned
//     shell), once the console has been quiet for promptQuiet, as a prompt is the last
//     thing a program prints before it waits;
//   - QEMU exiting closes the console, which the wait loops already report.
//
// In the console protocol the command's output travels base64-encoded, and on the
// channel not on the console at all, so output cannot look like a prompt.

// watchEvery is how often a command's wait wakes to look at the console when nothing
// arrived on the line it waits on (the channel's waits see no console data).
const watchEvery = 200 * time.Millisecond

// promptQuiet is how long a foreign prompt must be the last thing on the console.
const promptQuiet = 300 * time.Millisecond

// rebootBanner is what the kernel (reboot(2)) and the firmware print when a guest goes
// down or starts again.
var rebootBanner = regexp.MustCompile(`reboot: (Restarting system|Power down|System halted)|SeaBIOS \(version|Booting from (ROM|DVD|Hard Disk|CD)`)

type watch struct {
	s       *Shell
	pos     int64
	line    []byte // the console's last, unfinished line so far
	prompts bool
}

func (s *Shell) newWatch(pos int64, prompts bool) *watch {
	return &watch{s: s, pos: pos, prompts: prompts}
}

// shellName names the shell in errors.
func (s *Shell) shellName() string {
	if s.uid == 0 {
		return "root shell"
	}
	return "shell (uid " + strconv.Itoa(s.uid) + ")"
}

// gone records that the shell is gone and returns the error, with the console tail.
func (s *Shell) gone(e *ShellGoneError) error {
	e.Tail = s.con.Tail(20)
	s.setDead(e)
	s.log.Warn("shell.gone", "cmd", e.Cmd, "what", e.What)
	return e
}

// check looks at the console text that arrived since the last check.
func (w *watch) check(cmd string) error {
	text, end, err := w.s.con.Read(w.pos)
	if err != nil {
		return nil // the wait loops report a closed console themselves
	}
	w.pos = end
	if len(text) > 0 {
		// Markers and banners are whole lines: scan the unfinished line with the new text.
		buf := append(w.line, text...)
		if m := frame.ExitMarker.FindSubmatch(buf); m != nil {
			st, _ := strconv.Atoi(string(m[1]))
			return w.s.gone(&ShellGoneError{Cmd: cmd, What: fmt.Sprintf("the %s exited with status %d", w.s.shellName(), st), Status: st})
		}
		if m := rebootBanner.Find(buf); m != nil {
			return w.s.gone(&ShellGoneError{Cmd: cmd, What: fmt.Sprintf("the guest is rebooting or powering off (the console says %q)", m), Status: -1})
		}
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
		if len(buf) > 512 {
			buf = buf[len(buf)-512:]
		}
		w.line = append([]byte(nil), buf...)
	}
	if !w.prompts || len(w.line) == 0 || time.Since(w.s.con.LastOutput()) < promptQuiet {
		return nil
	}
	if what := foreignPrompt(string(w.line), w.s.ps1, w.s.prof); what != "" {
		return w.s.gone(&ShellGoneError{Cmd: cmd, What: fmt.Sprintf("the %s is gone (exited, exec'd or killed): %s", w.s.shellName(), what), Status: -1})
	}
	return nil
}

// foreignPrompt says which kind of prompt other than this shell's own (ps1) ends the
// console's last line, or "" when it is none or this shell's. The watch starts at the
// console position of the command, which can fall inside a late copy of the shell's own
// prompt: a line that is only the tail of ps1 ("ootlab-2$ ") is this shell's too
// (seen on the fixture under load, where it failed a healthy command).
func foreignPrompt(line, ps1 string, prof Profile) string {
	own := strings.TrimRight(ps1, " ")
	trimmed := strings.TrimRight(line, " ")
	switch {
	case own != "" && (strings.HasSuffix(trimmed, own) || strings.HasSuffix(own, trimmed)):
		return "" // a late prompt of this very shell
	case prof.LoginPrompt.MatchString(line):
		return fmt.Sprintf("the console shows a login prompt (%q)", line)
	case configuredPrompt.MatchString(line):
		return fmt.Sprintf("the prompt of the shell it was started from came back (%q)", line)
	case prof.ShellPrompt.MatchString(line):
		return fmt.Sprintf("a shell prompt that is not the harness's came up (%q)", line)
	}
	return ""
}

// waitTick waits until c has bytes beyond pos, ctx ends (its error is returned), or
// watchEvery passes (nil: the caller looks again).
func (s *Shell) waitTick(ctx context.Context, c *console.Console, pos int64) error {
	wctx, cancel := context.WithTimeout(ctx, watchEvery)
	defer cancel()
	err := c.WaitBeyond(wctx, pos)
	// Only the tick's own deadline is "look again". Checked before cancel runs: after it,
	// wctx.Err() is always set, and a closed line (QEMU killed) would be swallowed
	// forever, the wait spinning instead of failing.
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}
