package rundiff

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/runrec"
)

func probeVerdict(verdict, release string, status int) runrec.Verdict {
	zero := 0
	v := runrec.Verdict{Verdict: verdict, Predicate: "script check.script", Steps: []runrec.PredicateStep{
		{Step: "check.script:1 run uname -r", Result: "pass", ExitStatus: &zero, Output: "6.12.38+deb13-amd64\n"},
		{Step: "check.script:2 assert-output cat /etc/release", Result: "pass", ExitStatus: &status, Output: release},
	}}
	if verdict == "bad" {
		v.Steps[1].Result = "fail"
		v.Steps[1].Detail = "output does not match /^good/"
		v.FailedStep = "check.script:2 assert-output"
		v.Reason = `check.script:2 assert-output: output of "cat /etc/release" does not match /^good/: "bad"`
	}
	return v
}

// TestDiffOfProbeRunsStartsWithThePredicate: two bisect probe runs whose boots are the
// same and whose predicates disagree. The diff names the step whose output differs,
// both sides, before the boot evidence, and never says "no differences".
func TestDiffOfProbeRunsStartsWithThePredicate(t *testing.T) {
	root := t.TempDir()
	ev := evidence(t, "boot1", nil)
	good := fakeRun{slug: "bisect-up-2", outcome: runrec.Pass, milestones: cleanMilestones(2, 4), captures: ev}.write(t, root)
	bad := fakeRun{slug: "bisect-up-3", outcome: runrec.Pass, milestones: cleanMilestones(2, 4), captures: ev}.write(t, root)
	for dir, v := range map[string]runrec.Verdict{good: probeVerdict("good", "good\n", 0), bad: probeVerdict("bad", "bad\n", 0)} {
		r, err := runrec.Open(dir)
		require.NoError(t, err)
		require.NoError(t, r.SetVerdict(v))
	}
	d, err := CompareDirs(good, bad, Options{})
	require.NoError(t, err)
	require.False(t, d.Empty(), "the verdicts differ")
	text := d.Text()
	require.NotContains(t, text, NoDifferences)
	pred := strings.Index(text, "predicate (script check.script): A good, B bad")
	boot := strings.Index(text, "boot evidence:")
	require.True(t, pred >= 0 && boot > pred, "the predicate first, then the boot evidence:\n%s", text)
	require.Contains(t, text, "! check.script:2 assert-output cat /etc/release\n"+
		"    A: pass, exit 0, output \"good\\n\"\n"+
		"    B: fail, exit 0, output \"bad\\n\": output does not match /^good/\n")
	require.Contains(t, text, "  check.script:1 run uname -r\n", "the step that agrees is listed, unmarked")
	require.Contains(t, text, "boot evidence:\n  the same in both runs\n")

	// The same verdict on both: the predicate is shown and the boots compared as before.
	same, err := CompareDirs(good, good, Options{})
	require.NoError(t, err)
	require.True(t, same.Empty())
	require.Contains(t, same.Text(), "(the same in both runs)\n"+NoDifferences)
}
