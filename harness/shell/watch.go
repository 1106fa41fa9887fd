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
//   - a prompt that proves another program now reads the console, once the console
//     has been quiet for promptQuiet (a prompt is the last thing a program prints
//     before it waits): the prompt of another configured shell (each has its own,
//     bootlab-<n>$, see promptFor: the shell it was started from), a getty's login
//     prompt on a line of its own, or a whole line that is a known prompt of some user
//     (`[nixos@nixos:~]$`, `user@mini:~$`, `/ # `: a respawned shell). A prompt-shaped
//     tail of a line whose start the watch did not see is no evidence: it was once the
//     tail of the shell's own late prompt (`ootlab-2$ `), and a healthy `mount` failed;
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
	whole   bool   // line starts after a newline the watch saw, not mid-line
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
			w.whole = true
		}
		if len(buf) > 512 {
			buf = buf[len(buf)-512:]
			w.whole = false
		}
		w.line = append([]byte(nil), buf...)
	}
	if !w.prompts || len(w.line) == 0 || time.Since(w.s.con.LastOutput()) < promptQuiet {
		return nil
	}
	if what := foreignPrompt(string(w.line), w.whole, w.s.ps1, w.s.prof); what != "" {
		return w.s.gone(&ShellGoneError{Cmd: cmd, What: fmt.Sprintf("the %s is gone (exited, exec'd or killed): %s", w.s.shellName(), what), Status: -1})
	}
	return nil
}

// foreignPrompt says what proves, in the console's last line, that a program other than
// this shell (own prompt ps1) now waits for input, or "" when nothing does. whole says
// whether the line's start was seen. Only evidence counts:
//
//   - the complete prompt of another configured shell, bootlab-<n>$ with another n,
//     wherever it is on the line (the parent's prompt follows the dead shell's own on
//     the same line when nothing was printed in between);
//   - a getty's login prompt (`<host> login: `, `login: `) as a whole line;
//   - a whole line that is a known prompt of some user (knownPrompt) and the profile's.
//
// The watch starts at the console position of the command, which can fall inside a
// late copy of the shell's own prompt: a line that is only the tail of ps1 ("ootlab-2$
// ") is this shell's, and so is the prompt HandOver gave it for a person.
func foreignPrompt(line string, whole bool, ps1 string, prof Profile) string {
	own := strings.TrimRight(ps1, " ")
	trimmed := strings.TrimRight(line, " ")
	if trimmed == "" || own != "" && (strings.HasSuffix(trimmed, own) || strings.HasSuffix(own, trimmed)) {
		return "" // a late prompt of this very shell
	}
	if m := configuredPromptNumber.FindStringSubmatch(line); m != nil && "bootlab-"+m[1]+"$" != own {
		return fmt.Sprintf("the prompt of the shell it was started from came back (%q)", m[0])
	}
	if !whole || strings.Contains(line, debugPromptTag) {
		return ""
	}
	switch {
	case gettyLogin.MatchString(line) && prof.LoginPrompt.MatchString(line):
		return fmt.Sprintf("the console shows a login prompt (%q)", line)
	case knownPrompt.MatchString(line) && prof.ShellPrompt.MatchString(line):
		return fmt.Sprintf("a shell prompt that is not the harness's came up (%q)", line)
	}
	return ""
}

var (
	// configuredPromptNumber finds a whole configured prompt (promptFor) ending a line.
	configuredPromptNumber = regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])bootlab-([0-9]+)\$ ?$`)
	// gettyLogin is a getty's prompt alone on its line: agetty and busybox getty print
	// `<hostname> login: `, login(1) `login: `.
	gettyLogin = regexp.MustCompile(`^(?:[A-Za-z0-9][A-Za-z0-9.-]* )?login: ?$`)
	// knownPrompt is the shape of the prompts images give their users: NixOS's
	// `[nixos@nixos:~]$` and `[root@nixos:~]#`, Debian's and the mini image's
	// `user@mini:~$`, busybox's `/ # ` and `~ # `, and bash's default `bash-5.2#`.
	knownPrompt = regexp.MustCompile(`^(?:\[[^\]\s@]+@[^\]\s]+\]|[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+(?::\S*)?|[~/]\S*|(?:ba|da|z)?sh-[0-9.]+) ?[$#] ?$`)
)

// debugPromptTag starts the prompt HandOver sets for a person.
const debugPromptTag = "[bootlab debug]"

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
