package bisect

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bootlab/bootlab/artifacts/runrec"
)

// PredicateKind names how a booted candidate is judged.
type PredicateKind string

const (
	// PredicateScenario runs a scenario from ./scenarios by name.
	PredicateScenario PredicateKind = "scenario"
	// PredicateScript runs an expect script (ParseScript) on the console.
	PredicateScript PredicateKind = "script"
	// PredicateCommand runs a shell command on the host (RunHostCommand).
	PredicateCommand PredicateKind = "command"
)

// Predicate is what the CLI hands to the Prober. It is stored in the start
// event of bisect.jsonl so a resume judges with the same predicate; the
// script's text is stored too, because the file may change in between.
type Predicate struct {
	Kind       PredicateKind `json:"kind"`
	Scenario   string        `json:"scenario,omitempty"`
	ScriptPath string        `json:"script_path,omitempty"`
	ScriptText string        `json:"script_text,omitempty"`
	Command    string        `json:"command,omitempty"`
}

// describe names the predicate for run records ("script check.script").
func (p *Predicate) describe() string {
	switch p.Kind {
	case PredicateScript:
		return "script " + p.ScriptPath
	case PredicateCommand:
		return "command " + p.Command
	case PredicateScenario:
		return "scenario " + p.Scenario
	}
	return string(p.Kind)
}

// Script parses the stored script text.
func (p *Predicate) Script() (*Script, error) {
	if p == nil || p.Kind != PredicateScript {
		return nil, errors.New("predicate is not an expect script")
	}
	return ParseScript(strings.NewReader(p.ScriptText), p.ScriptPath)
}

// PredicateUser is implemented by a Prober that takes its predicate from the
// `bootlab bisect` flags (or from the log on --resume).
type PredicateUser interface {
	UsePredicate(p *Predicate) error
}

// Script step operations.
const (
	OpSend         = "send"
	OpSendRaw      = "send-raw"
	OpExpect       = "expect"
	OpRun          = "run"
	OpAssertOutput = "assert-output"
	OpTimeout      = "timeout"
)

// Step is one line of an expect script.
type Step struct {
	Line    int
	Op      string
	Text    string         // send, send-raw: the bytes; run, assert-output: the command
	Regexp  *regexp.Regexp // expect, assert-output
	Timeout time.Duration  // expect: its total deadline
}

// Script is a parsed expect script (format in docs/bisect.md).
type Script struct {
	Name  string
	Steps []Step
}

// DefaultExpectTimeout bounds an `expect` without its own timeout.
const DefaultExpectTimeout = 60 * time.Second

// ParseScript reads the expect-script format:
//
//	# comment
//	timeout 90s                   default for later expects
//	expect login:                 regexp, default timeout
//	expect "\\$ $" 10s            quoted (Go syntax) when it has edge spaces
//	send root                     text + "\n"
//	send-raw "\x03"               exact bytes, no newline
//	run systemctl is-active sshd  framed command, must exit 0
//	assert-output "uname -r" ^6\.12\.
//
// A trailing argument that parses as a Go duration is the expect timeout;
// quote a regexp that itself ends in something like ` 5s`.
func ParseScript(r io.Reader, name string) (*Script, error) {
	s := &Script{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	def := DefaultExpectTimeout
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		op, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		st := Step{Line: lineNo, Op: op}
		fail := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: %s: %s", name, lineNo, op, fmt.Sprintf(format, a...))
		}
		switch op {
		case OpTimeout:
			d, err := time.ParseDuration(rest)
			if err != nil || d <= 0 {
				return nil, fail("want a positive duration like 90s, got %q", rest)
			}
			def = d
			continue
		case OpSend, OpSendRaw:
			text, tail, err := scriptArg(rest, true)
			if err != nil {
				return nil, fail("%v", err)
			}
			if tail != "" {
				return nil, fail("unexpected %q after the text", tail)
			}
			if op == OpSendRaw && text == "" {
				return nil, fail("needs text")
			}
			st.Text = text
		case OpExpect:
			pat, tail, err := scriptArg(rest, true)
			if err != nil {
				return nil, fail("%v", err)
			}
			st.Timeout = def
			if !strings.HasPrefix(rest, `"`) {
				// Unquoted: the last word is a timeout if it parses.
				if i := strings.LastIndexAny(rest, " \t"); i > 0 {
					if d, err := time.ParseDuration(strings.TrimSpace(rest[i:])); err == nil {
						pat, st.Timeout = strings.TrimSpace(rest[:i]), d
					}
				}
			} else if tail != "" {
				d, err := time.ParseDuration(tail)
				if err != nil {
					return nil, fail("after the quoted regexp want a timeout, got %q", tail)
				}
				st.Timeout = d
			}
			if pat == "" {
				return nil, fail("needs a regexp")
			}
			if st.Timeout <= 0 {
				return nil, fail("timeout must be positive")
			}
			re, err := regexp.Compile(pat)
			if err != nil {
				return nil, fail("%v", err)
			}
			st.Regexp = re
		case OpRun:
			if rest == "" {
				return nil, fail("needs a command")
			}
			st.Text = rest
		case OpAssertOutput:
			cmd, tail, err := scriptArg(rest, false)
			if err != nil {
				return nil, fail("%v", err)
			}
			pat := tail
			if strings.HasPrefix(tail, `"`) {
				var t2 string
				if pat, t2, err = scriptArg(tail, false); err != nil {
					return nil, fail("%v", err)
				}
				if t2 != "" {
					return nil, fail("unexpected %q after the regexp", t2)
				}
			}
			if cmd == "" || pat == "" {
				return nil, fail(`want CMD REGEX (quote a CMD with spaces: assert-output "uname -r" ^6\.)`)
			}
			re, err := regexp.Compile(pat)
			if err != nil {
				return nil, fail("%v", err)
			}
			st.Text, st.Regexp = cmd, re
		default:
			return nil, fmt.Errorf("%s:%d: unknown step %q (want send, send-raw, expect, run, assert-output, timeout)", name, lineNo, op)
		}
		s.Steps = append(s.Steps, st)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading script %s: %w", name, err)
	}
	if len(s.Steps) == 0 {
		return nil, fmt.Errorf("script %s has no steps", name)
	}
	return s, nil
}

// scriptArg takes one argument: a Go-quoted string, or else (whole=true)
// the rest of the line / (whole=false) the first word.
func scriptArg(s string, whole bool) (arg, tail string, err error) {
	if strings.HasPrefix(s, `"`) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", "", fmt.Errorf("bad quoted string in %q: %w", s, err)
		}
		uq, err := strconv.Unquote(q)
		if err != nil {
			return "", "", fmt.Errorf("bad quoted string %s: %w", q, err)
		}
		return uq, strings.TrimSpace(s[len(q):]), nil
	}
	if whole {
		return s, "", nil
	}
	first, rest, _ := strings.Cut(s, " ")
	return first, strings.TrimSpace(rest), nil
}

// ScriptRunner is the console/shell a script drives; the harness implements
// it over its console and framed shell. Errors that wrap ErrInfra mean the
// VM or console broke (the candidate is then skipped, not judged bad).
type ScriptRunner interface {
	Send(ctx context.Context, text string) error
	// Expect returns nil once re matches the normalised console stream,
	// or an error when ctx ends first.
	Expect(ctx context.Context, re *regexp.Regexp) error
	// Run executes cmd as a framed command and returns its exact output
	// and exit status.
	Run(ctx context.Context, cmd string) (output []byte, status int, err error)
}

// ErrInfra marks a ScriptRunner error as an infrastructure failure.
var ErrInfra = errors.New("test infrastructure failure")

// RunScript executes s and judges the candidate: every step passing is
// Good, a failing step is Bad with the step named in Reason, an ErrInfra
// failure is Skip. An error is returned only when ctx itself ends. The
// Outcome's Steps say how each step went (output included), for the probe's
// run record and the diff of two probes.
func RunScript(ctx context.Context, s *Script, r ScriptRunner) (Outcome, error) {
	steps := make([]runrec.PredicateStep, len(s.Steps))
	for i, st := range s.Steps {
		steps[i] = runrec.PredicateStep{Step: stepName(s.Name, st), Result: StepNotRun}
	}
	end := func(i int, o Outcome, result, detail string) (Outcome, error) {
		steps[i].Result, steps[i].Detail = result, detail
		o.Steps, o.FailedStep = steps, fmt.Sprintf("%s:%d %s", s.Name, s.Steps[i].Line, s.Steps[i].Op)
		return o, nil
	}
	for i, st := range s.Steps {
		where := fmt.Sprintf("%s:%d %s", s.Name, st.Line, st.Op)
		var err error
		switch st.Op {
		case OpSend:
			err = r.Send(ctx, st.Text+"\n")
		case OpSendRaw:
			err = r.Send(ctx, st.Text)
		case OpExpect:
			sctx, cancel := context.WithTimeout(ctx, st.Timeout)
			err = r.Expect(sctx, st.Regexp)
			cancel()
			if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				detail := fmt.Sprintf("/%s/ not seen within %s", st.Regexp, st.Timeout)
				return end(i, Outcome{Verdict: Bad, Reason: where + ": " + detail}, StepFail, detail)
			}
		case OpRun, OpAssertOutput:
			var out []byte
			var status int
			out, status, err = r.Run(ctx, st.Text)
			if err == nil {
				steps[i].ExitStatus, steps[i].Output = &status, capOutput(out)
			}
			if err == nil && status != 0 {
				detail := fmt.Sprintf("exited %d", status)
				return end(i, Outcome{Verdict: Bad, Reason: fmt.Sprintf("%s: %q exited %d: %s", where, st.Text, status, excerpt(out))}, StepFail, detail)
			}
			if err == nil && st.Op == OpAssertOutput && !st.Regexp.Match(out) {
				detail := fmt.Sprintf("output does not match /%s/", st.Regexp)
				return end(i, Outcome{Verdict: Bad, Reason: fmt.Sprintf("%s: output of %q does not match /%s/: %s", where, st.Text, st.Regexp, excerpt(out))}, StepFail, detail)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return Outcome{}, fmt.Errorf("%s: %w", where, ctx.Err())
			}
			if errors.Is(err, ErrInfra) {
				return end(i, Outcome{Verdict: Skip, Reason: fmt.Sprintf("%s: %v", where, err)}, StepError, err.Error())
			}
			return end(i, Outcome{Verdict: Bad, Reason: fmt.Sprintf("%s: %v", where, err)}, StepFail, err.Error())
		}
		steps[i].Result = StepPass
	}
	return Outcome{Verdict: Good, Reason: fmt.Sprintf("all %d steps of %s passed", len(s.Steps), s.Name), Steps: steps}, nil
}

// Results of a predicate step (runrec.PredicateStep.Result).
const (
	StepPass   = "pass"
	StepFail   = "fail"
	StepError  = "error"
	StepNotRun = "not-run"
)

// stepName is a step as the run record and the diff name it: where it is and what it
// does ("check.script:3 assert-output cat /etc/release").
func stepName(script string, st Step) string {
	arg := st.Text
	switch st.Op {
	case OpExpect:
		arg = "/" + st.Regexp.String() + "/"
	case OpSend, OpSendRaw:
		arg = strconv.Quote(st.Text)
	case OpAssertOutput:
		arg = st.Text + " ~ /" + st.Regexp.String() + "/"
	}
	return fmt.Sprintf("%s:%d %s %s", script, st.Line, st.Op, arg)
}

// capOutput keeps a step's output for the run record: enough to compare two probes,
// not a log (the console's is in serial.log).
func capOutput(b []byte) string {
	const max = 4096
	if len(b) > max {
		return string(b[:max]) + "\n... (" + strconv.Itoa(len(b)-max) + " more bytes)"
	}
	return string(b)
}

func excerpt(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		b = append(append([]byte(nil), b[:200]...), "..."...)
	}
	return strconv.Quote(string(b))
}

// VMEnv is what a host command learns about the booted VM.
type VMEnv struct {
	SSHHost       string // BOOTLAB_SSH_HOST (127.0.0.1 when empty and a port is set)
	SSHPort       int    // BOOTLAB_SSH_PORT
	SSHUser       string // BOOTLAB_SSH_USER
	SSHKey        string // BOOTLAB_SSH_KEY: private key path
	ConsoleSocket string // BOOTLAB_CONSOLE_SOCKET: serial console unix socket
	QMPSocket     string // BOOTLAB_QMP_SOCKET
	RunDir        string // BOOTLAB_RUN_DIR: the probe's run directory
	Candidate     Candidate
	Index         int // BOOTLAB_CANDIDATE_INDEX
	Attempt       int // BOOTLAB_ATTEMPT
}

// Environ renders the BOOTLAB_* variables (documented in docs/bisect.md).
func (v VMEnv) Environ() []string {
	host := v.SSHHost
	if host == "" && v.SSHPort != 0 {
		host = "127.0.0.1"
	}
	kv := [][2]string{
		{"BOOTLAB_SSH_HOST", host},
		{"BOOTLAB_SSH_PORT", portString(v.SSHPort)},
		{"BOOTLAB_SSH_USER", v.SSHUser},
		{"BOOTLAB_SSH_KEY", v.SSHKey},
		{"BOOTLAB_CONSOLE_SOCKET", v.ConsoleSocket},
		{"BOOTLAB_QMP_SOCKET", v.QMPSocket},
		{"BOOTLAB_RUN_DIR", v.RunDir},
		{"BOOTLAB_CANDIDATE", v.Candidate.Name},
		{"BOOTLAB_CANDIDATE_INDEX", strconv.Itoa(v.Index)},
		{"BOOTLAB_ATTEMPT", strconv.Itoa(v.Attempt)},
		{"BOOTLAB_ISO", v.Candidate.ISO},
		{"BOOTLAB_KERNEL", v.Candidate.Kernel},
		{"BOOTLAB_INITRD", v.Candidate.Initrd},
		{"BOOTLAB_APPEND", v.Candidate.Append},
	}
	out := make([]string, 0, len(kv))
	for _, p := range kv {
		out = append(out, p[0]+"="+p[1])
	}
	return out
}

func portString(p int) string {
	if p == 0 {
		return ""
	}
	return strconv.Itoa(p)
}

// Exit codes of a host predicate command, as `git bisect run` reads them.
const (
	ExitSkip = 125
)

// RunHostCommand runs cmd with `sh -c` on the host, in env.RunDir, with the
// BOOTLAB_* variables added to the environment and its output (both
// streams) saved to RUN_DIR/predicate.log. Exit status, as in
// `git bisect run`: 0 good, 125 skip, 1-127 otherwise bad (so 126/127, "not
// executable"/"not found", are bad too; the endpoint check catches a typo
// because the first candidate then fails), and a status above 127 or death
// by a signal aborts the bisection (ErrAbort): the command itself broke.
func RunHostCommand(ctx context.Context, cmd string, env VMEnv) (Outcome, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Env = append(os.Environ(), env.Environ()...)
	c.Dir = env.RunDir
	// Its own process group, so a timeout kills what it started too.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	start := time.Now()
	err := c.Run()
	dur := time.Since(start)
	if env.RunDir != "" {
		if werr := os.WriteFile(filepath.Join(env.RunDir, "predicate.log"), out.Bytes(), 0o644); werr != nil {
			return Outcome{}, fmt.Errorf("saving predicate output: %w", werr)
		}
	}
	if ctx.Err() != nil {
		return Outcome{}, fmt.Errorf("predicate command %q: %w", cmd, ctx.Err())
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return Outcome{}, fmt.Errorf("starting predicate command %q: %w (%w)", cmd, err, ErrAbort)
		}
		code = ee.ExitCode()
		if code < 0 {
			return Outcome{}, fmt.Errorf("predicate command %q died: %v (%w)", cmd, ee, ErrAbort)
		}
	}
	o := Outcome{RunDir: env.RunDir, Duration: dur}
	switch {
	case code == 0:
		o.Verdict, o.Reason = Good, "predicate command exited 0"
	case code == ExitSkip:
		o.Verdict, o.Reason = Skip, "predicate command exited 125 (skip): "+excerpt(lastLine(out.Bytes()))
	case code <= 127:
		o.Verdict, o.Reason = Bad, fmt.Sprintf("predicate command exited %d: %s", code, excerpt(lastLine(out.Bytes())))
	default:
		return Outcome{}, fmt.Errorf("predicate command %q exited %d (>127 aborts, as in git bisect run): %w", cmd, code, ErrAbort)
	}
	return o, nil
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}
