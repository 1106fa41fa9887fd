package shell

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/bootlab/bootlab/harness/console"
)

// Result is what a framed command produced.
type Result struct {
	Output     []byte
	ExitStatus int
	Duration   time.Duration
}

// ExitError is a command that ran and exited non-zero.
type ExitError struct {
	Cmd    string
	Result Result
}

func (e *ExitError) Error() string {
	out := strings.TrimSpace(string(e.Result.Output))
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	return fmt.Sprintf("command %q exited with status %d; output:\n%s", e.Cmd, e.Result.ExitStatus, out)
}

// CommandTimeoutError is a command whose END marker did not arrive in time.
type CommandTimeoutError struct {
	Cmd     string
	Started bool // the BEGIN marker arrived: the shell ran it but it did not finish
	Tail    string
	After   time.Duration
}

func (e *CommandTimeoutError) Error() string {
	what := "the shell never started it (BEGIN marker not seen: shell busy, dead or not a shell)"
	if e.Started {
		what = "it started but did not finish"
	}
	return fmt.Sprintf("command %q timed out after %s: %s; last console output:\n%s", e.Cmd, e.After.Round(time.Millisecond), what, e.Tail)
}

// ErrShellGone is what a ShellGoneError unwraps to.
var ErrShellGone = errors.New("the shell running the command is gone")

// ShellGoneError is a command whose shell ended while running it: the command exited
// the shell (`exit 3`), replaced it (`exec true`), killed it (`kill -9 $$`), or the guest
// rebooted. The harness learns it from the shell's exit trap, the prompt of the shell
// underneath coming back, a login prompt, or a reboot banner, within a second or two
// instead of at the command's timeout. The Shell refuses further commands until
// TakeBack proves a root shell again, because whatever shell now reads the console is
// not the one that was proved root.
type ShellGoneError struct {
	Cmd string
	// What happened, in words ("the root shell exited with status 3").
	What string
	// Status is the shell's exit status when its exit trap reported one, else -1.
	Status int
	Tail   string
}

func (e *ShellGoneError) Error() string {
	return fmt.Sprintf("%s while running %q; last console output:\n%s", e.What, e.Cmd, indentBlock(e.Tail))
}

// Unwrap makes errors.Is(err, ErrShellGone) work.
func (e *ShellGoneError) Unwrap() error { return ErrShellGone }

// Gone tells capture that no more commands can run.
func (e *ShellGoneError) Gone() bool { return true }

// Options tune a Shell.
type Options struct {
	Logger *slog.Logger
	// LoginTimeout bounds the wait for the first prompt (boot included). Default 5 min.
	LoginTimeout time.Duration
	// StepTimeout bounds each dialogue step after that (password prompts, escalation,
	// the framed probes). Default 60 s.
	StepTimeout time.Duration
	// Settle is how long the console must stay quiet after a prompt-like last line
	// before it is believed to be a prompt, for prompts nobody asked for: the first one
	// at boot (boot messages can end in "login: " or "# ") and an automatic login's
	// banner. Default 100 ms.
	Settle time.Duration
	// ReplySettle is the same for a prompt that answers what the harness just typed (a
	// password prompt after the user name, the shell after the password or `su -`):
	// the program printing it is the one that now waits for input, so a short quiet
	// period is enough, and typing a little early is harmless because the framed
	// `id -u` that follows proves the shell either way. Default 20 ms.
	ReplySettle time.Duration
	// Milestone is told when the login prompt is seen and when root is proved.
	Milestone func(name string, at time.Time)
	// From is the console position to start looking for prompts (default 0: the
	// whole stream, since the prompt may already have been printed).
	From int64
	// Channel returns the host side of the guest's virtio-serial frame port, or nil
	// when the VM has none. Once root, the shell opens the port and carries framed
	// output on it (frame.ChannelFunctions); without one, or when the guest cannot open
	// it, output travels on the console (base64 + MD5) as before.
	Channel func() *console.Console
	// ChannelTimeout bounds the proof that the channel works. Default 15 s.
	ChannelTimeout time.Duration
}

// Transports framed output can travel on.
const (
	TransportConsole = "console"
	TransportChannel = "virtio-serial"
)

// Attempt records one escalation try, for diagnostics.
type Attempt struct {
	Method     Method
	OK         bool
	Reason     string
	Transcript string // normalised console text during the attempt
}

// Shell is a configured shell on a console with one command in flight at most.
type Shell struct {
	con  *console.Console
	prof Profile
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	nonce  string
	seq    int
	uid    int
	ps1    string // this shell's prompt, unique per configured shell ("bootlab-2$ ")
	shells int    // shells configured so far, for the prompt tags
	// deadMu guards dead apart from mu, which a command holds for as long as it runs:
	// a VM being stopped (a signal, a test's cleanup) asks Gone while a command may be
	// in flight, and used to wait for that command's whole timeout (5 min for `sleep`).
	deadMu   sync.Mutex
	dead     error            // the *ShellGoneError that ended this shell, until TakeBack
	ch       *console.Console // the open frame channel, nil while output uses the console
	chWhy    string           // why the channel is not in use
	Attempts []Attempt
}

// RejectedError is a framed command whose typed line the shell refused before running
// it: the framing function was not found (`sh: 1R__bl: not found`: bytes that reached
// the shell before the line, such as a late cursor-position report, were glued to its
// front) or the line did not parse. Nothing will ever print the command's BEGIN marker,
// so it is reported as soon as the shell says so, in the shell's own words, instead of
// at the command's timeout.
type RejectedError struct {
	Cmd   string
	Words string // the shell's diagnostic line(s)
	Tail  string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("the shell rejected the line that runs %q: %s; last console output:\n%s", e.Cmd, e.Words, indentBlock(e.Tail))
}
