package bisect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
)

// VM is a booted candidate as the harness hands it to a predicate: its
// console/shell for scripts, its connection details for host commands.
type VM interface {
	ScriptRunner
	// Env returns the SSH/console/QMP details; VMProber fills in the
	// candidate, run directory, index and attempt.
	Env() VMEnv
	// Close shuts the VM down and reaps QEMU; it must be bounded by ctx.
	Close(ctx context.Context) error
}

// Booter boots one candidate with its logs in runDir. An error means the
// candidate could not be brought up, which makes the probe a Skip (wrap
// ErrAbort for problems that no other candidate will escape either, such
// as QEMU missing).
type Booter interface {
	Boot(ctx context.Context, c Candidate, runDir string) (VM, error)
}

// ScenarioFunc runs a named scenario against a booted VM and judges it.
type ScenarioFunc func(ctx context.Context, name string, vm VM, runDir string) (Outcome, error)

// VMProber is the Prober `bootlab bisect` uses: boot with Booter, judge
// with the predicate from the flags, shut down, and leave outcome.json in
// the run directory. The harness supplies Boot (and Scenario); everything
// about predicates stays here so it is tested without VMs.
type VMProber struct {
	Boot     Booter
	Scenario ScenarioFunc
	// ShutdownTimeout bounds Close; 0 means one minute.
	ShutdownTimeout time.Duration

	pred   *Predicate
	script *Script
}

// UsePredicate implements PredicateUser.
func (p *VMProber) UsePredicate(pred *Predicate) error {
	switch pred.Kind {
	case PredicateScript:
		s, err := pred.Script()
		if err != nil {
			return err
		}
		p.script = s
	case PredicateScenario:
		if p.Scenario == nil {
			return errors.New("this bootlab cannot run scenarios from bisect yet")
		}
		if pred.Scenario == "" {
			return errors.New("empty scenario name")
		}
	case PredicateCommand:
		if pred.Command == "" {
			return errors.New("empty command")
		}
	default:
		return fmt.Errorf("unknown predicate kind %q", pred.Kind)
	}
	p.pred = pred
	return nil
}

// Probe implements Prober.
func (p *VMProber) Probe(ctx context.Context, c Candidate, attempt int, runDir string) (out Outcome, err error) {
	if p.pred == nil {
		return Outcome{}, fmt.Errorf("VMProber has no predicate: %w", ErrAbort)
	}
	start := time.Now()
	evidence := ""
	defer func() {
		if err == nil {
			if evidence != "" {
				out.RunDir = evidence
			}
			out.Duration = time.Since(start)
			if werr := WriteOutcome(runDir, c, attempt, out); werr != nil {
				err = werr
			}
		}
	}()
	vm, err := p.Boot.Boot(ctx, c, runDir)
	if ev, ok := vm.(Evidence); ok && err == nil {
		evidence = ev.EvidenceDir()
	}
	if err != nil {
		var ev Evidence
		if errors.As(err, &ev) {
			evidence = ev.EvidenceDir()
		}
		if ctx.Err() != nil || errors.Is(err, ErrAbort) {
			return Outcome{}, fmt.Errorf("booting %s: %w", c.Name, err)
		}
		return Outcome{Verdict: Skip, Reason: "boot failed: " + err.Error()}, nil
	}
	defer func() {
		// Shut down even when ctx is done: leaving QEMU behind is worse
		// than a slower Ctrl-C.
		to := p.ShutdownTimeout
		if to <= 0 {
			to = time.Minute
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), to)
		defer cancel()
		if vr, ok := vm.(VerdictRecorder); ok && err == nil && out.Verdict.valid() {
			// Before Close: the run record says what the predicate said, and a
			// guest whose verdict is in need not be waited for.
			if rerr := vr.RecordVerdict(out, p.pred.describe()); rerr != nil {
				out.Reason += fmt.Sprintf(" (recording the verdict: %v)", rerr)
			}
		}
		if cerr := vm.Close(sctx); cerr != nil && err == nil && out.Verdict == Good {
			// The predicate passed but the guest did not shut down
			// cleanly; keep the verdict, say so.
			out.Reason += fmt.Sprintf(" (shutdown: %v)", cerr)
		}
	}()
	switch p.pred.Kind {
	case PredicateScript:
		return RunScript(ctx, p.script, vm)
	case PredicateCommand:
		env := vm.Env()
		env.Candidate, env.RunDir, env.Attempt = c, runDir, attempt
		if pi, ok := ProbeInfoFrom(ctx); ok {
			env.Index = pi.Index
		}
		return RunHostCommand(ctx, p.pred.Command, env)
	default:
		return p.Scenario(ctx, p.pred.Scenario, vm, runDir)
	}
}

// WriteOutcome leaves the verdict next to the probe's logs as outcome.json, so a run
// directory copied out of a bisection still says what it showed. VMProber writes it for
// booted probes and vmprobe for scenario probes; nothing happens when runDir is "".
func WriteOutcome(runDir string, c Candidate, attempt int, out Outcome) error {
	if runDir == "" {
		return nil
	}
	b, err := json.MarshalIndent(struct {
		Candidate  Candidate `json:"candidate"`
		Attempt    int       `json:"attempt"`
		Verdict    Verdict   `json:"verdict"`
		Reason     string    `json:"reason,omitempty"`
		DurationMS int64     `json:"duration_ms"`
	}{c, attempt, out.Verdict, out.Reason, out.Duration.Milliseconds()}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding outcome of %s: %w", c.Name, err)
	}
	if err := atomicfile.Write(filepath.Join(runDir, "outcome.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing outcome of %s: %w", c.Name, err)
	}
	return nil
}

// VerdictRecorder is implemented by a booted VM that keeps a run record: VMProber
// hands it the predicate's outcome (steps included) before Close, so the probe's run
// is recorded as what the predicate judged (a bad candidate's run is bad, not pass)
// and the stop need not wait for a guest whose verdict is already in.
type VerdictRecorder interface {
	RecordVerdict(out Outcome, predicate string) error
}

// Evidence is implemented by a booted VM, or a boot error, that knows the harness's own
// run directory for the probe (report.html, serial.log, diagnostics): VMProber reports
// it as the Outcome's RunDir, so the bisect report links the evidence a person opens
// first, without the booter keeping a side table keyed by probe directory.
type Evidence interface {
	EvidenceDir() string
}

// BootError is a boot failure that still left evidence in Dir.
type BootError struct {
	Err error
	Dir string
}

func (e *BootError) Error() string       { return e.Err.Error() }
func (e *BootError) Unwrap() error       { return e.Err }
func (e *BootError) EvidenceDir() string { return e.Dir }

// BooterFunc adapts a function to Booter.
type BooterFunc func(ctx context.Context, c Candidate, runDir string) (VM, error)

// Boot calls f.
func (f BooterFunc) Boot(ctx context.Context, c Candidate, runDir string) (VM, error) {
	return f(ctx, c, runDir)
}
