// Package fakerunner is a scripted execpolicy.Runner for tests: it expects an
// exact sequence of command lines and fails the test on anything else, so a
// changed command sequence can never pass silently.
package fakerunner

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
)

// Call is one expected command and the reply to give.
type Call struct {
	Cmd    string
	Stdout string
	Stderr string
	Exit   int
	Err    error
}

// Runner replays Calls in order.
type Runner struct {
	t        testing.TB
	mu       sync.Mutex
	expected []Call
	next     int
	// Seen lists every command line received, expected or not.
	Seen []string
	// Envs records Cmd.Env of each received command.
	Envs [][]string
}

// New returns a runner that requires exactly the given calls, in order, by the
// end of the test.
func New(t testing.TB, calls ...Call) *Runner {
	r := &Runner{t: t, expected: calls}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.next < len(r.expected) {
			var missing []string
			for _, c := range r.expected[r.next:] {
				missing = append(missing, c.Cmd)
			}
			t.Errorf("fakerunner: %d expected command(s) never ran:\n  %s\nseen:\n  %s",
				len(missing), strings.Join(missing, "\n  "), strings.Join(r.Seen, "\n  "))
		}
	})
	return r
}

// Ok is a shorthand for a successful call with no output.
func Ok(cmds ...string) []Call {
	out := make([]Call, len(cmds))
	for i, c := range cmds {
		out[i] = Call{Cmd: c}
	}
	return out
}

// Run implements execpolicy.Runner.
func (r *Runner) Run(_ context.Context, c execpolicy.Cmd) (execpolicy.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := c.String()
	r.Seen = append(r.Seen, line)
	r.Envs = append(r.Envs, c.Env)
	if r.next >= len(r.expected) {
		r.t.Errorf("fakerunner: unexpected command %q (all %d expected commands already ran)", line, len(r.expected))
		return execpolicy.Result{ExitCode: 99}, fmt.Errorf("fakerunner: unexpected command %q", line)
	}
	want := r.expected[r.next]
	if want.Cmd != line {
		r.t.Errorf("fakerunner: command #%d = %q, want %q", r.next+1, line, want.Cmd)
		return execpolicy.Result{ExitCode: 99}, fmt.Errorf("fakerunner: unexpected command %q", line)
	}
	r.next++
	return execpolicy.Result{Stdout: []byte(want.Stdout), Stderr: []byte(want.Stderr), ExitCode: want.Exit}, want.Err
}

// Recorder is a permissive runner for property tests and fuzzing: it
// records every command and answers from Replies (keyed by the exact
// command line), or with success and no output.
type Recorder struct {
	mu      sync.Mutex
	Replies map[string]Call
	// Seen lists every command line received; Cmds the commands themselves.
	Seen []string
	Cmds []execpolicy.Cmd
}

// Run implements execpolicy.Runner.
func (r *Recorder) Run(_ context.Context, c execpolicy.Cmd) (execpolicy.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := c.String()
	r.Seen = append(r.Seen, line)
	r.Cmds = append(r.Cmds, c)
	want, ok := r.Replies[line]
	if !ok {
		return execpolicy.Result{}, nil
	}
	return execpolicy.Result{Stdout: []byte(want.Stdout), Stderr: []byte(want.Stderr), ExitCode: want.Exit}, want.Err
}
