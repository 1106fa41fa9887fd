package report

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bootlab/bootlab/artifacts/runrec"
)

// TestTimelineSaysHowEachStopStageEnded: the shutdown's stages are on the timeline
// with why each ended, and a bad probe's run reads BAD with its failing step.
func TestTimelineSaysHowEachStopStageEnded(t *testing.T) {
	r, err := runrec.Create(t.TempDir(), "bisect-up-3", t0)
	if err != nil {
		t.Fatal(err)
	}
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	steps := []error{
		r.Milestone("root_shell", at(5.8)),
		r.SpanNote("shutdown:guest-poweroff", at(6.0), at(8.0), "refused: the shell's prompt came back and no shutdown progress followed within 2s"),
		r.SpanNote("shutdown:qmp-quit", at(8.0), at(8.1), "QEMU exited"),
		r.SpanNote(runrec.MilestoneShutdown, at(6.0), at(8.1), "ended by qmp-quit"),
		r.SetVerdict(runrec.Verdict{Verdict: "bad", Reason: "check.script:3 assert-output: output does not match", FailedStep: "check.script:3 assert-output"}),
		r.Finish(runrec.Bad, "predicate verdict bad: check.script:3 assert-output: output does not match", at(8.2)),
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, r.Dir, Options{}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		"<b>shutdown:guest-poweroff</b> (8.0 s (&#43;2.0 s)): refused: the shell&#39;s prompt came back and no shutdown progress followed within 2s",
		"<b>shutdown:qmp-quit</b> (8.1 s (&#43;0.1 s)): QEMU exited",
		"BAD (the predicate judged the image bad)",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q:\n%s", want, page[strings.Index(page, "<ul class=\"notes\">"):][:600])
		}
	}
	if e := r.LedgerEntry(); e.Outcome != runrec.Bad || e.FailedStep != "check.script:3 assert-output" {
		t.Errorf("ledger entry says %s / %q, want bad with the failing step", e.Outcome, e.FailedStep)
	}
	if _, ok := r.LedgerEntry().Milestones["shutdown:qmp-quit"]; ok {
		t.Error("the stop's stages are not boot milestones for the trend")
	}
}
