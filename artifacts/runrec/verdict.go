package runrec

import "strings"

// Bad is the outcome of a run whose boot worked but whose predicate judged the image
// bad (a bisect probe of a bad candidate): neither a pass nor a harness failure.
const Bad Outcome = "bad"

// Verdict is a predicate's judgement of the run (a bisect probe's script or command):
// the boot passing says only that the guest could be tested.
type Verdict struct {
	// Verdict is good, bad or skip (the candidate could not be tested).
	Verdict string `json:"verdict"`
	// Reason is one line: why bad, or why it could not be tested.
	Reason string `json:"reason,omitempty"`
	// Predicate names what judged ("script check.script", "command ./check.sh").
	Predicate string `json:"predicate,omitempty"`
	// FailedStep names the step that decided a bad or skip verdict
	// ("check.script:3 assert-output").
	FailedStep string `json:"failed_step,omitempty"`
	// Steps are the predicate's steps in order, each with its result and output, so
	// two runs' predicates can be compared side by side (bootlab diff).
	Steps []PredicateStep `json:"steps,omitempty"`
}

// PredicateStep is one step of a predicate as it ran.
type PredicateStep struct {
	// Step is the step as written ("check.script:3 assert-output cat /etc/release").
	Step string `json:"step"`
	// Result is pass, fail, error (the console or VM broke) or not-run.
	Result string `json:"result"`
	// ExitStatus of a command step (run, assert-output, a host command).
	ExitStatus *int `json:"exit_status,omitempty"`
	// Output is what the step printed (a command's output, capped).
	Output string `json:"output,omitempty"`
	// Detail says why it failed.
	Detail string `json:"detail,omitempty"`
}

// SetVerdict records the predicate's verdict. Finish keeps it; a bad verdict makes a
// run that would pass a Bad one (see lab.Close).
func (r *Run) SetVerdict(v Verdict) error {
	return r.Update(func(m *Metadata) { m.Verdict = &v })
}

// OutcomeWithVerdict is the run's outcome once a predicate has judged a run whose boot
// passed: bad for a bad verdict, error for a candidate that could not be tested, pass
// otherwise. Any other outcome (a failed boot) stands.
func OutcomeWithVerdict(o Outcome, v *Verdict) Outcome {
	if o != Pass || v == nil {
		return o
	}
	switch v.Verdict {
	case "bad":
		return Bad
	case "skip":
		return Error
	}
	return o
}

// IsShutdown reports whether a milestone is the shutdown or one of its stages
// ("shutdown:qmp-quit"): the harness's own time, not the boot's.
func IsShutdown(name string) bool {
	return name == MilestoneShutdown || strings.HasPrefix(name, MilestoneShutdown+":")
}
