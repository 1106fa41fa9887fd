package shell

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/frame"
)

// RunOption adjusts one Run.
type RunOption func(*runOpts)

type runOpts struct {
	allowFail bool
	timeout   time.Duration
	console   bool
	probe     bool
}

// probe marks the framed `id -u` that proves a shell which may be new or not yet set
// up: it runs even after the shell was reported gone, and other prompts on the console
// are expected then (the new shell's own before its setup line takes effect), so only
// the exit trap and reboot banners count as the shell going.
func probe() RunOption { return func(o *runOpts) { o.probe = true } }

// AllowFail returns a non-zero exit status in the Result instead of an error.
func AllowFail() RunOption { return func(o *runOpts) { o.allowFail = true } }

// OnConsole frames this command on the console (base64 + MD5) even when the channel is
// open: for measuring and testing that transport on a VM that has both.
func OnConsole() RunOption { return func(o *runOpts) { o.console = true } }

// Timeout bounds this command (the context still applies).
func Timeout(d time.Duration) RunOption { return func(o *runOpts) { o.timeout = d } }

// Run executes cmd in the guest shell and returns its exact output (stdout and stderr
// merged, as a terminal would show them) and exit status. Only one command runs at a
// time. A non-zero status is an error unless AllowFail is given.
func (s *Shell) Run(ctx context.Context, cmd string, opts ...RunOption) (Result, error) {
	var o runOpts
	for _, f := range opts {
		f(&o)
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if dead := s.Gone(); dead != nil && !o.probe {
		return Result{}, fmt.Errorf("not running %q: %w", cmd, dead)
	}
	start := time.Now()
	id := s.nextID()
	onChannel := s.ch != nil && !o.console
	fn, typedID := "__bl", id
	if onChannel {
		// The guest function adds the nonce it was given when the channel opened.
		fn, typedID = "__blf", strconv.Itoa(s.seq)
	}
	lines, err := frame.TypedLines(fn, typedID, cmd)
	if err != nil {
		return Result{}, err
	}
	if onChannel {
		return s.runChannel(ctx, cmd, id, lines, start, o)
	}
	pos := s.con.Pos()
	w := s.newWatch(pos, !o.probe)
	for _, l := range lines {
		if err := s.con.Send(ctx, l); err != nil {
			return Result{}, fmt.Errorf("sending command %q: %w", cmd, err)
		}
	}
	out, status, err := s.collect(ctx, id, pos, cmd, start, w)
	for retry := 1; errors.Is(err, frame.ErrCorrupt) && retry <= 3; retry++ {
		s.log.Warn("shell.frame_corrupt", "cmd", cmd, "retry", retry, "error", err.Error())
		id = s.nextID()
		pos = s.con.Pos()
		if serr := s.con.Send(ctx, frame.Retransmit(id)); serr != nil {
			return Result{}, serr
		}
		out, status, err = s.collect(ctx, id, pos, cmd, start, w)
	}
	r := Result{Output: out, ExitStatus: status, Duration: time.Since(start)}
	if err != nil {
		var setup *frame.SetupError
		if errors.As(err, &setup) {
			return r, fmt.Errorf("running %q: %w", cmd, err)
		}
		return r, err
	}
	s.log.Debug("shell.run", "cmd", cmd, "status", status, "bytes", len(out), "duration", r.Duration.String())
	if status != 0 && !o.allowFail {
		return r, &ExitError{Cmd: cmd, Result: r}
	}
	return r, nil
}

// runChannel sends the invocation on the console and reads the frame from the channel.
func (s *Shell) runChannel(ctx context.Context, cmd, id string, lines []string, start time.Time, o runOpts) (Result, error) {
	pos := s.ch.Pos()
	w := s.newWatch(s.con.Pos(), !o.probe)
	for _, l := range lines {
		if err := s.con.Send(ctx, l); err != nil {
			return Result{}, fmt.Errorf("sending command %q: %w", cmd, err)
		}
	}
	p := frame.NewChannelParser(id)
	var rej rejection
	cpos := s.con.Pos()
	for {
		data, end, err := s.ch.Read(pos)
		if err != nil {
			return Result{}, fmt.Errorf("reading output of %q from the frame channel: %w", cmd, err)
		}
		pos = end
		if p.Feed(data) {
			break
		}
		if p.Received() == 0 {
			// The invocation is typed on the console: the shell's refusal shows there.
			text, cend, err := s.con.Read(cpos)
			if err == nil {
				cpos = cend
				if words := rej.feed(text); words != "" {
					return Result{}, s.rejected(cmd, words)
				}
			}
		}
		if st, ok := p.Exited(); ok {
			return Result{}, s.gone(&ShellGoneError{Cmd: cmd, What: fmt.Sprintf("the %s exited with status %d", s.shellName(), st), Status: st})
		}
		if gone := w.check(cmd); gone != nil {
			return Result{}, gone
		}
		err = s.waitTick(ctx, s.ch, pos)
		switch {
		case err == nil:
		case errors.Is(err, console.ErrClosed):
			return Result{}, &console.ClosedError{Waiting: fmt.Sprintf("the end of command %q on the frame channel", cmd), Tail: s.con.Tail(40)}
		case ctx.Err() != nil:
			_ = s.con.Send(context.Background(), "\x03")
			return Result{}, &CommandTimeoutError{Cmd: cmd, Started: p.Received() > 0, Tail: s.con.Tail(40), After: time.Since(start)}
		default:
			// Never loop on an error the wait keeps returning.
			return Result{}, fmt.Errorf("waiting for the end of command %q on the frame channel: %w", cmd, err)
		}
	}
	if n := p.Stray(); n > 0 {
		s.log.Info("shell.channel_stray_bytes", "cmd", cmd, "bytes", n)
	}
	out, status, _ := p.Result()
	r := Result{Output: out, ExitStatus: status, Duration: time.Since(start)}
	s.log.Debug("shell.run", "cmd", cmd, "status", status, "bytes", len(out), "duration", r.Duration.String(), "transport", TransportChannel)
	if status != 0 && !o.allowFail {
		return r, &ExitError{Cmd: cmd, Result: r}
	}
	return r, nil
}

func (s *Shell) nextID() string {
	s.seq++
	return s.nonce + "-" + strconv.Itoa(s.seq)
}

func (s *Shell) collect(ctx context.Context, id string, pos int64, cmd string, start time.Time, w *watch) ([]byte, int, error) {
	p := frame.NewParser(id)
	var rej rejection
	for {
		data, end, err := s.con.Read(pos)
		if err != nil {
			return nil, 0, fmt.Errorf("reading output of %q: %w", cmd, err)
		}
		pos = end
		done := p.Feed(data)
		if !done && !p.Started() {
			// Before the BEGIN marker only the shell itself prints: a diagnostic there
			// is about the typed line, and no marker will ever come.
			if words := rej.feed(data); words != "" {
				return nil, 0, s.rejected(cmd, words)
			}
		}
		if done {
			for _, n := range p.Noise() {
				s.log.Info("shell.console_noise", "cmd", cmd, "line", n)
			}
			return p.Result()
		}
		if gone := w.check(cmd); gone != nil {
			return nil, 0, gone
		}
		err = s.waitTick(ctx, s.con, pos)
		switch {
		case err == nil:
		case errors.Is(err, console.ErrClosed):
			return nil, 0, &console.ClosedError{Waiting: fmt.Sprintf("the end of command %q", cmd), Tail: s.con.Tail(40)}
		case ctx.Err() != nil:
			// Interrupt the command so the shell is usable again; the next command has
			// new markers, so a late END from this one cannot be mistaken for its own.
			_ = s.con.Send(context.Background(), "\x03")
			return nil, 0, &CommandTimeoutError{Cmd: cmd, Started: p.Started(), Tail: s.con.Tail(40), After: time.Since(start)}
		default:
			// Never loop on an error the wait keeps returning.
			return nil, 0, fmt.Errorf("waiting for the end of command %q: %w", cmd, err)
		}
	}
}

// rejected logs and builds the error for a typed line the shell refused.
func (s *Shell) rejected(cmd, words string) error {
	s.log.Warn("shell.rejected", "cmd", cmd, "words", words)
	// A long command is typed in pieces: an interrupt flushes the tty's pending input,
	// so the rest of a command that lost a piece is not run half.
	_ = s.con.Send(context.Background(), "\x03")
	return &RejectedError{Cmd: cmd, Words: words, Tail: s.con.Tail(20)}
}
