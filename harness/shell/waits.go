package shell

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/progress"
	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/frame"
)

// WaitError is a wait that ended without its condition: timed out, or reached a state
// from which the condition cannot follow (a unit that failed).
type WaitError struct {
	What     string
	Terminal bool // reached a terminal state; waiting longer would not help
	Last     string
	Err      error
}

func (e *WaitError) Error() string {
	if e.Terminal {
		return fmt.Sprintf("%s: gave up at terminal state %q", e.What, e.Last)
	}
	return fmt.Sprintf("%s: %v (last seen: %q)", e.What, e.Err, e.Last)
}

func (e *WaitError) Unwrap() error { return e.Err }

// pollInterval is short: each check runs inside the guest, so a poll costs no round trip.
const pollInterval = 0.2

// guestLoop runs check in the guest every pollInterval until it exits 0 (its output is
// returned), exits 3 (terminal failure), or the time left in ctx runs out. Looping in
// the guest keeps one framed command in flight for the whole wait instead of one per
// poll, and ends by itself, so the shell is never left running a stale loop.
func (s *Shell) guestLoop(ctx context.Context, what, check string) (last string, err error) {
	// A person watching sees what is awaited and for how long (bootlab run puts its
	// progress line in the context; without one nothing is shown).
	end := progress.FromContext(ctx).Wait(what)
	defer func() { end(err) }()
	budget := 10 * time.Minute
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl) - 2*time.Second // leave time for the END marker
	}
	if budget <= 0 {
		return "", &WaitError{What: what, Err: context.DeadlineExceeded}
	}
	n := int(math.Ceil(budget.Seconds() / pollInterval))
	script := fmt.Sprintf(`( __n=%d; while :; do __o=$( { %s ; } 2>&1 ); __r=$?; if [ $__r = 0 ] || [ $__r = 3 ]; then printf %%s "$__o"; exit $__r; fi; __n=$((__n-1)); if [ $__n -le 0 ]; then printf %%s "$__o"; exit 124; fi; sleep %g; done )`, n, check, pollInterval)
	r, err := s.Run(ctx, script, AllowFail())
	last = strings.TrimSpace(string(r.Output))
	if err != nil {
		return last, &WaitError{What: what, Last: last, Err: err}
	}
	switch r.ExitStatus {
	case 0:
		return last, nil
	case 3:
		return last, &WaitError{What: what, Terminal: true, Last: last}
	default:
		return last, &WaitError{What: what, Last: last, Err: fmt.Errorf("timed out after %s", budget.Round(time.Second))}
	}
}

// WaitFile waits for a path to exist in the guest.
func (s *Shell) WaitFile(ctx context.Context, path string) error {
	_, err := s.guestLoop(ctx, "waiting for "+path, "test -e "+frame.Quote(path))
	return err
}

// WaitUnit waits for a systemd unit to reach one of the wanted states (as printed by
// `systemctl is-active`). It fails at once when the unit is `failed` and failed is not
// wanted: a oneshot that failed will never become inactive.
func (s *Shell) WaitUnit(ctx context.Context, unit string, want ...string) (string, error) {
	var cases []string
	failedWanted := false
	for _, w := range want {
		cases = append(cases, w)
		failedWanted = failedWanted || w == "failed"
	}
	terminal := ""
	if !failedWanted {
		terminal = "failed) echo failed; exit 3;; "
	}
	check := fmt.Sprintf(`__s=$(systemctl is-active %s); case $__s in %s) echo $__s; exit 0;; %s*) echo $__s; exit 1;; esac`,
		frame.Quote(unit), strings.Join(cases, "|"), terminal)
	return s.guestLoop(ctx, fmt.Sprintf("waiting for unit %s to be %s", unit, strings.Join(want, " or ")), check)
}

var ipv4Re = regexp.MustCompile(`inet ([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)`)

// WaitIPv4 waits for an IPv4 address on an interface and returns it.
func (s *Shell) WaitIPv4(ctx context.Context, iface string) (string, error) {
	check := fmt.Sprintf(`ip -4 -o addr show dev %s 2>&1 | grep -o 'inet [0-9.]*'`, frame.Quote(iface))
	out, err := s.guestLoop(ctx, "waiting for an IPv4 address on "+iface, check)
	if err != nil {
		return "", err
	}
	m := ipv4Re.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("waiting for an IPv4 address on %s: unexpected output %q", iface, out)
	}
	return m[1], nil
}

// WaitConsole waits for text on the console (for example a broadcast the guest prints
// by itself), looking at everything since from. It does not use the shell, so it can
// run while a command is in flight.
func (s *Shell) WaitConsole(ctx context.Context, from int64, re *regexp.Regexp) (string, error) {
	m, err := s.con.Expect(ctx, from, console.Pattern{Name: re.String(), Re: re})
	if err != nil {
		return "", err
	}
	return m.Text, nil
}

// Poweroff asks the guest to power off. The shell dies with the guest, so no END marker
// is awaited; the caller waits for QEMU to exit.
func (s *Shell) Poweroff(ctx context.Context, command string) error {
	if command == "" {
		command = "poweroff"
	}
	// A command still in flight holds the shell, and what is typed now would be its
	// input: the stop goes on to QEMU's own stages instead of waiting for it.
	if !s.mu.TryLock() {
		return errors.New("a command is still running in the shell; not typing " + command)
	}
	defer s.mu.Unlock()
	return s.con.Send(ctx, command+"\n")
}

// WaitUntil polls check (a shell snippet) inside the guest until it exits 0 (its output
// is returned), exits 3 (a terminal state: the WaitError says Terminal), or the time left
// in ctx runs out. what names the wait in errors.
func (s *Shell) WaitUntil(ctx context.Context, what, check string) (string, error) {
	return s.guestLoop(ctx, what, check)
}
