package shell

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/frame"
)

// Login gets a verified root shell.
func Login(ctx context.Context, con *console.Console, prof Profile, opts Options) (*Shell, error) {
	if err := prof.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LoginTimeout <= 0 {
		opts.LoginTimeout = 5 * time.Minute
	}
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = time.Minute
	}
	if opts.Settle <= 0 {
		opts.Settle = 100 * time.Millisecond
	}
	if opts.ReplySettle <= 0 {
		opts.ReplySettle = 20 * time.Millisecond
	}
	if opts.Milestone == nil {
		opts.Milestone = func(string, time.Time) {}
	}
	if opts.ChannelTimeout <= 0 {
		opts.ChannelTimeout = 15 * time.Second
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	s := &Shell{con: con, prof: prof.withDefaults(), opts: opts, log: opts.Logger, nonce: hex.EncodeToString(b), uid: -1}
	if err := s.login(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// UID is the proved user id of the shell.
func (s *Shell) UID() int { return s.uid }

// Gone returns the *ShellGoneError that ended the proved shell, or nil while it lives
// (or after TakeBack proved a root shell again).
func (s *Shell) Gone() error {
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	return s.dead
}

func (s *Shell) setDead(err error) {
	s.deadMu.Lock()
	s.dead = err
	s.deadMu.Unlock()
}

// Console is the line the shell runs on.
func (s *Shell) Console() *console.Console { return s.con }

// Transport says where framed output travels: TransportChannel or TransportConsole.
func (s *Shell) Transport() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		return TransportChannel
	}
	return TransportConsole
}

// ChannelStatus explains the transport: "in use", or why the channel is not.
func (s *Shell) ChannelStatus() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		return "in use"
	}
	return s.chWhy
}

func (s *Shell) login(ctx context.Context) error {
	p := &s.prof
	lctx, cancel := context.WithTimeout(ctx, s.opts.LoginTimeout)
	defer cancel()
	m, err := s.waitPrompt(lctx, s.opts.From, "the first login or shell prompt", true, s.opts.Settle,
		console.Pattern{Name: "login prompt", Re: p.LoginPrompt},
		console.Pattern{Name: "shell prompt", Re: p.ShellPrompt})
	if err != nil {
		return fmt.Errorf("waiting for the guest to offer a login: %w", err)
	}
	s.opts.Milestone("login_prompt", time.Now())
	s.log.Info("shell.first_prompt", "kind", m.Name, "line", lastLine(m.Before+m.Text))
	if m.Name == "login prompt" {
		if err := s.answerLogin(ctx, m.End); err != nil {
			return err
		}
	}
	if err := s.configure(ctx, "login shell"); err != nil {
		return err
	}
	if s.uid == 0 {
		s.log.Info("shell.root", "how", "login shell is already root")
		s.opts.Milestone("root_shell", time.Now())
		return s.afterRoot(ctx)
	}
	var reasons []string
	for _, method := range p.Escalation {
		a := s.escalate(ctx, method)
		s.Attempts = append(s.Attempts, a)
		if a.OK {
			s.log.Info("shell.root", "how", string(method))
			s.opts.Milestone("root_shell", time.Now())
			return s.afterRoot(ctx)
		}
		s.log.Warn("shell.escalation_failed", "method", string(method), "reason", a.Reason)
		reasons = append(reasons, fmt.Sprintf("%s: %s\n  transcript:\n%s", method, a.Reason, indentBlock(a.Transcript)))
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("could not get a root shell (login shell uid %d); tried:\n%s", s.uid, strings.Join(reasons, "\n"))
}

func (s *Shell) afterRoot(ctx context.Context) error {
	if s.prof.QuietKernel {
		if _, err := s.Run(ctx, "dmesg -n 1", AllowFail()); err != nil {
			return fmt.Errorf("quieting kernel console messages: %w", err)
		}
	}
	return s.connectChannel(ctx)
}

// connectChannel has the root shell open the virtio-serial frame port and proves it
// with one framed command on it. Any failure leaves the console transport in place
// with the reason recorded: the channel is a fast path, never a prerequisite. Only the
// final root shell opens it, because the port allows a single opener and a user shell
// left underneath `su -` would keep it busy.
func (s *Shell) connectChannel(ctx context.Context) error {
	s.setChannel(nil, "")
	var ch *console.Console
	if s.opts.Channel != nil {
		ch = s.opts.Channel()
	}
	if ch == nil {
		s.setChannel(nil, "the VM has no frame channel")
		return nil
	}
	if err := ch.Err(); err != nil {
		s.setChannel(nil, "the host side of the channel is closed: "+err.Error())
		return nil
	}
	r, err := s.Run(ctx, frame.ChannelConnect(s.nonce), AllowFail())
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		s.setChannel(nil, "opening the channel in the guest: "+err.Error())
		return nil
	}
	if r.ExitStatus != 0 {
		why := frame.ChannelConnectReason(r.ExitStatus)
		if out := strings.TrimSpace(string(r.Output)); out != "" {
			why += ": " + out
		}
		s.setChannel(nil, why)
		s.log.Warn("shell.channel_unavailable", "reason", why)
		return nil
	}
	s.setChannel(ch, "")
	const probe = "bootlab-channel-ok"
	r, err = s.Run(ctx, "echo "+probe, Timeout(s.opts.ChannelTimeout))
	if err == nil && string(r.Output) == probe+"\n" {
		s.log.Info("shell.channel", "transport", TransportChannel)
		return nil
	}
	why := fmt.Sprintf("the guest opened the port but a framed probe on it failed (output %q, error %v)", r.Output, err)
	s.setChannel(nil, why)
	s.log.Warn("shell.channel_unavailable", "reason", why)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Close it again so a later attempt (TakeBack) is not refused as busy.
	_, _ = s.Run(ctx, "exec 7>&- 6<&-", AllowFail())
	return nil
}

func (s *Shell) setChannel(ch *console.Console, why string) {
	s.mu.Lock()
	s.ch, s.chWhy = ch, why
	s.mu.Unlock()
}

// answerLogin handles a `login:` prompt at position pos.
func (s *Shell) answerLogin(ctx context.Context, pos int64) error {
	p := &s.prof
	if p.LoginUser == "" {
		// The image logs in by itself; wait for its shell. The banner usually follows the
		// prompt on the same line, a moment later.
		sctx, cancel := context.WithTimeout(ctx, s.opts.StepTimeout)
		defer cancel()
		_, err := s.waitPrompt(sctx, pos, "an automatic login's shell prompt", false, s.opts.Settle, console.Pattern{Name: "shell prompt", Re: p.ShellPrompt})
		if err != nil {
			return fmt.Errorf("profile %s expects an automatic login, but none came after the login prompt: %w", p.Name, err)
		}
		return nil
	}
	mark := s.con.Pos()
	if err := s.con.Send(ctx, p.LoginUser+"\n"); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, s.opts.StepTimeout)
	defer cancel()
	m, err := s.waitPrompt(sctx, mark, "a password or shell prompt after the user name", false, s.opts.ReplySettle,
		console.Pattern{Name: "password prompt", Re: p.PasswordPrompt},
		console.Pattern{Name: "shell prompt", Re: p.ShellPrompt},
		console.Pattern{Name: "login prompt", Re: p.LoginPrompt})
	if err != nil {
		return fmt.Errorf("logging in as %s: %w", p.LoginUser, err)
	}
	switch m.Name {
	case "shell prompt":
		return nil
	case "login prompt":
		return fmt.Errorf("logging in as %s: the guest asked for a login again (user unknown?); console:\n%s", p.LoginUser, indentBlock(s.con.Tail(10)))
	}
	mark = s.con.Pos()
	if err := s.con.SendSecret(ctx, p.LoginPassword+"\n"); err != nil {
		return err
	}
	m, err = s.waitPrompt(sctx, mark, "a shell prompt after the password", false, s.opts.ReplySettle,
		console.Pattern{Name: "shell prompt", Re: p.ShellPrompt},
		console.Pattern{Name: "login prompt", Re: p.LoginPrompt})
	if err != nil {
		return fmt.Errorf("logging in as %s: %w", p.LoginUser, err)
	}
	if m.Name == "login prompt" || loginIncorrect.MatchString(m.Before) {
		return fmt.Errorf("logging in as %s: the guest rejected the password; console:\n%s", p.LoginUser, indentBlock(s.con.Tail(10)))
	}
	return nil
}

// escalate tries one method and proves the result with id -u.
func (s *Shell) escalate(ctx context.Context, method Method) (a Attempt) {
	p := &s.prof
	a.Method = method
	start := s.con.Pos()
	defer func() {
		text, _, _ := s.con.Read(start)
		a.Transcript = string(text)
	}()
	sctx, cancel := context.WithTimeout(ctx, s.opts.StepTimeout)
	defer cancel()
	mark := s.con.Pos()
	if err := s.con.Send(sctx, string(method)+"\n"); err != nil {
		a.Reason = err.Error()
		return a
	}
	m, err := s.waitPrompt(sctx, mark, "a password or shell prompt after "+string(method), false, s.opts.ReplySettle,
		console.Pattern{Name: "password prompt", Re: p.PasswordPrompt},
		console.Pattern{Name: "shell prompt", Re: p.ShellPrompt})
	if err != nil {
		a.Reason = fmt.Sprintf("no prompt after %s: %v", method, err)
		s.recover(ctx)
		return a
	}
	if m.Name == "password prompt" {
		pw, ok := p.SudoPassword, p.SudoPassword != ""
		if method == Su {
			pw, ok = p.RootPassword, true // root's password may legitimately be empty
		} else if !ok && p.LoginPassword != "" {
			pw, ok = p.LoginPassword, true
		}
		if !ok {
			a.Reason = fmt.Sprintf("%s asked for a password (%q) and profile %s has none for it", method, lastLine(m.Before+m.Text), p.Name)
			s.recover(ctx)
			return a
		}
		mark = s.con.Pos()
		if err := s.con.SendSecret(sctx, pw+"\n"); err != nil {
			a.Reason = err.Error()
			return a
		}
		m, err = s.waitPrompt(sctx, mark, "a shell prompt after the password", false, s.opts.ReplySettle,
			console.Pattern{Name: "shell prompt", Re: p.ShellPrompt},
			console.Pattern{Name: "password prompt", Re: p.PasswordPrompt})
		if err != nil {
			a.Reason = fmt.Sprintf("no shell after giving %s a password: %v", method, err)
			s.recover(ctx)
			return a
		}
		if m.Name == "password prompt" || loginIncorrect.MatchString(m.Before) {
			a.Reason = fmt.Sprintf("%s rejected the password", method)
			s.recover(ctx)
			return a
		}
	}
	if err := s.configure(ctx, string(method)); err != nil {
		a.Reason = err.Error()
		return a
	}
	if s.uid != 0 {
		a.Reason = fmt.Sprintf("%s left a shell with uid %d", method, s.uid)
		return a
	}
	a.OK = true
	return a
}

// recover gets back to the shell that issued a failed escalation: an interrupt ends a
// password prompt, and a fresh framed probe proves the shell listens again.
func (s *Shell) recover(ctx context.Context) {
	_ = s.con.Send(ctx, "\x03")
	time.Sleep(200 * time.Millisecond)
	_ = s.con.Send(ctx, "\n")
	rctx, cancel := context.WithTimeout(ctx, s.opts.StepTimeout)
	defer cancel()
	if _, err := s.readUID(rctx); err != nil {
		s.log.Warn("shell.recover_failed", "error", err.Error())
	}
}

// setupLines prepare a shell for automation. They turn off echo and CR translation so
// output is what commands wrote, empty PROMPT_COMMAND and bracketed paste so nothing
// else is printed between commands, set the shell's own prompt ps1, and install the
// framing functions and the exit trap. They are typed as separate lines, each shorter
// than maxEditLine: busybox ash's line editor (active while echo is still on) silently
// breaks a longer line.
func setupLines(ps1 string) string {
	return "stty -echo -onlcr 2>/dev/null; PS1='" + ps1 + "'; PS2=''; PROMPT_COMMAND=''; export TERM=dumb LC_ALL=C PAGER=cat SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 SYSTEMD_LESS=FRSX; unset HISTFILE; bind 'set enable-bracketed-paste off' 2>/dev/null\n" +
		frame.GuestFunctions + "\n" + frame.ChannelFunctions + "\n" + frame.ExitTrap + "\n"
}

// promptFor is the prompt of the n-th configured shell. Each shell gets its own, so that
// the prompt of the shell underneath (the user shell under `su -`) coming back is told
// apart from a late prompt of the shell running the command.
func promptFor(n int) string { return "bootlab-" + strconv.Itoa(n) + "$ " }

// configuredPrompt matches the prompts setupLines sets; a profile's ShellPrompt
// describes the image's own prompts and need not match them.
var configuredPrompt = regexp.MustCompile(`bootlab(-[0-9]+)?\$ ?$`)

// maxEditLine is the longest line busybox ash's line editor takes (1024 with its NUL).
const maxEditLine = 1023

func (s *Shell) configure(ctx context.Context, context_ string) error {
	s.shells++
	ps1 := promptFor(s.shells)
	if err := s.con.Send(ctx, setupLines(ps1)); err != nil {
		return fmt.Errorf("configuring the %s: %w", context_, err)
	}
	var lastErr error
	for attempt := 1; attempt <= 2; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, s.opts.StepTimeout)
		uid, err := s.readUID(sctx)
		cancel()
		if err == nil {
			s.uid = uid
			s.mu.Lock()
			s.ps1 = ps1
			s.mu.Unlock()
			s.setDead(nil)
			s.log.Info("shell.configured", "context", context_, "uid", uid)
			return nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("shell.uid_probe_failed", "context", context_, "attempt", attempt, "error", err.Error())
		// The function definitions may have been lost to a shell that was not ready.
		_ = s.con.Send(ctx, "\n"+setupLines(ps1))
	}
	return fmt.Errorf("proving the user id of the %s with a framed `id -u`: %w", context_, lastErr)
}

// readUID proves who the shell is with a framed `id -u` on the console (the proof must
// not depend on the channel's state), then waits for the prompt the shell prints after
// it, so that the next dialogue step (`sudo -i`, `su -`) does not take that stale
// prompt for its answer: with a 20 ms reply settle, a slow sudo would otherwise look
// like a shell that needed no password.
func (s *Shell) readUID(ctx context.Context) (int, error) {
	from := s.con.Pos()
	r, err := s.Run(ctx, "id -u", OnConsole(), probe())
	if err != nil {
		return -1, err
	}
	uid, err := strconv.Atoi(strings.TrimSpace(string(r.Output)))
	if err != nil {
		return -1, fmt.Errorf("`id -u` printed %q, not a number", r.Output)
	}
	s.awaitPromptAfterFrame(ctx, from)
	return uid, nil
}

// awaitPromptAfterFrame waits (briefly, and never failing) for the shell prompt that
// follows a console frame. Looking from where the command was typed is enough: the
// frame's own lines end in its END marker, so the last line is a prompt only once the
// shell has printed it.
func (s *Shell) awaitPromptAfterFrame(ctx context.Context, from int64) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.waitPrompt(wctx, from, "the prompt after a framed command", false, s.opts.ReplySettle,
		console.Pattern{Name: "configured prompt", Re: configuredPrompt},
		console.Pattern{Name: "shell prompt", Re: s.prof.ShellPrompt}); err != nil {
		s.log.Info("shell.no_prompt_after_frame", "error", err.Error())
	}
}

// waitPrompt waits until the last line of console text after pos matches a pattern and
// the console then stays quiet for the settle time: a prompt is the last thing a
// program prints before it waits for input. wake types an Enter if the console is silent
// for the profile's WakeupAfter (a prompt printed before we attached is printed again).
func (s *Shell) waitPrompt(ctx context.Context, pos int64, what string, wake bool, settleFor time.Duration, pats ...console.Pattern) (console.Match, error) {
	start := time.Now()
	lastWake := start
	for {
		text, end, err := s.con.Read(pos)
		if err != nil {
			return console.Match{}, err
		}
		line, at := promptTail(string(text))
		for i, p := range pats {
			if loc := p.Re.FindStringIndex(line); loc != nil {
				// Believe it only if nothing follows within the settle time.
				settle, cancel := context.WithTimeout(ctx, settleFor)
				werr := s.con.WaitBeyond(settle, end)
				cancel()
				if werr != nil && ctx.Err() == nil && !errors.Is(werr, console.ErrClosed) {
					lineStart := int64(at)
					return console.Match{Index: i, Name: p.Name, Start: pos + lineStart + int64(loc[0]), End: pos + lineStart + int64(loc[1]), Text: line[loc[0]:loc[1]], Before: string(text[:int(lineStart)+loc[0]])}, nil
				}
				break
			}
		}
		if s.con.Err() != nil {
			return console.Match{}, &console.ClosedError{Waiting: what, Tail: s.con.Tail(40)}
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		err = s.con.WaitBeyond(wctx, end)
		cancel()
		if ctx.Err() != nil {
			return console.Match{}, &console.TimeoutError{Waiting: what, After: time.Since(start), Tail: s.con.Tail(40), Cause: ctx.Err()}
		}
		if err != nil && wake && time.Since(lastWake) > s.prof.WakeupAfter && time.Since(s.lastOutput()) > s.prof.WakeupAfter {
			lastWake = time.Now()
			s.log.Info("shell.wakeup", "silent_for", s.prof.WakeupAfter.String())
			_ = s.con.Send(ctx, "\n")
		}
	}
}

func (s *Shell) lastOutput() time.Time { return s.con.LastOutput() }

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func indentBlock(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (nothing)"
	}
	return "    | " + strings.ReplaceAll(s, "\n", "\n    | ")
}

// HandOver makes the shell usable by a person attached to the console: echo back on and
// a prompt that says where they are. Automation resumes with TakeBack.
func (s *Shell) HandOver(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.con.Send(ctx, "stty echo onlcr 2>/dev/null; PS1='[bootlab debug] \\u@\\h:\\w\\$ '\n")
}

// takeBackQuiet is how long the line must be silent, with every cursor query answered,
// before TakeBack types; takeBackSettleMax bounds that wait.
const (
	takeBackQuiet     = 300 * time.Millisecond
	takeBackSettleMax = 10 * time.Second
)

// TakeBack restores the automation settings after a person used the shell and proves it
// is still root (they may have exited a shell or changed user).
func (s *Shell) TakeBack(ctx context.Context) error {
	// The person's shell has echo on, so busybox's line editor asks where the cursor is
	// after each prompt. Typing before that query's report has gone out puts the report
	// behind the setup line, where `stty -echo` turns it into typed input of the next
	// command. Let the line settle first; if it will not (a command still printing),
	// go on: a line the shell rejects is reported at once in its own words.
	sctx, cancel := context.WithTimeout(ctx, takeBackSettleMax)
	if err := s.con.Settle(sctx, takeBackQuiet); err != nil && ctx.Err() == nil {
		s.log.Warn("shell.takeback_unsettled", "error", err.Error())
	}
	cancel()
	if err := s.configure(ctx, "shell after a debug session"); err != nil {
		return err
	}
	if s.uid != 0 {
		return fmt.Errorf("after the debug session the shell is uid %d, not root", s.uid)
	}
	// The person may have left the shell that held the port open: open it afresh.
	return s.connectChannel(ctx)
}
