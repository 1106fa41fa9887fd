package bisect

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

func runDir(t *testing.T, root string, o runrec.Outcome, failed string) string {
	t.Helper()
	r, err := runrec.Create(root, "probe", time.Now())
	require.NoError(t, err)
	require.NoError(t, r.Milestone("root_shell", time.Now()))
	require.NoError(t, r.Finish(o, "", time.Now()))
	dir := filepath.Join(r.Dir, filepath.FromSlash(rundiff.EvidenceDir))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "systemctl-failed.txt"), []byte(failed), 0o644))
	require.NoError(t, rundiff.AppendCaptureIndex(dir, []rundiff.CaptureRecord{{Name: "systemctl-failed", File: "systemctl-failed.txt", Size: len(failed)}}))
	return r.Dir
}

// The bisection's report names what changed between the last good and first bad runs.
func TestReportHasBoundaryDiff(t *testing.T) {
	root := t.TempDir()
	good := runDir(t, root, runrec.Pass, "")
	bad := runDir(t, root, runrec.Fail, "pre-nixos.service loaded failed failed pre-nixos\n")
	r := &Result{Status: StatusFound, Dir: root, FirstBad: 2, LastGood: 1, FirstKnownBad: 2,
		Candidates: []Candidate{{Name: "a"}, {Name: "b"}, {Name: "c"}},
		Probes: []ProbeRecord{
			{Index: 1, Name: "b", Verdict: Good, RunDir: good},
			{Index: 2, Name: "c", Verdict: Bad, RunDir: bad},
		}}
	r.diffBoundary()
	require.NotNil(t, r.RunDiff)
	require.NotNil(t, r.RunDiff.Diff, r.RunDiff.Note)
	require.Equal(t, []string{"pre-nixos.service"}, r.RunDiff.Diff.Units.Failed)
	var txt bytes.Buffer
	require.NoError(t, WriteTextReport(&txt, r))
	require.Contains(t, txt.String(), "units failed: pre-nixos.service")
	html := filepath.Join(root, "report.html")
	require.NoError(t, WriteHTMLReport(html, r))
	b, err := os.ReadFile(html)
	require.NoError(t, err)
	require.Contains(t, string(b), "Last good vs first bad")
	require.Contains(t, string(b), "units failed: pre-nixos.service")

	// A predicate that keeps no run records gets a note, not an error.
	r.Probes[0].RunDir = filepath.Join(root, "nothing")
	r.diffBoundary()
	require.Nil(t, r.RunDiff.Diff)
	require.Contains(t, r.RunDiff.Note, "not a run directory")
}

// recordingVM keeps a run record like the harness's labs: the predicate's verdict is
// recorded into it before Close, which finishes it as a passing boot.
type recordingVM struct {
	*fakeVM
	rec *runrec.Run
}

func (v recordingVM) EvidenceDir() string { return v.rec.Dir }
func (v recordingVM) RecordVerdict(out Outcome, predicate string) error {
	return v.rec.SetVerdict(runrec.Verdict{Verdict: string(out.Verdict), Reason: out.Reason, Predicate: predicate,
		FailedStep: out.FailedStep, Steps: out.Steps})
}
func (v recordingVM) Close(ctx context.Context) error {
	_ = v.fakeVM.Close(ctx)
	return v.rec.Finish(runrec.OutcomeWithVerdict(runrec.Pass, v.rec.Metadata().Verdict), "", time.Now())
}

// TestReportNamesThePredicatesDifferingOutput: two boots alike, one printing another
// kernel version. The bisection's report diffs the last good and first bad probes'
// runs starting with the predicate: the step whose output differs, both outputs; the
// first bad probe's run is bad, not pass; never "no differences".
func TestReportNamesThePredicatesDifferingOutput(t *testing.T) {
	dir := t.TempDir()
	booter := &fakeBooter{firstBad: 3}
	vp := &VMProber{Boot: BooterFunc(func(ctx context.Context, c Candidate, runDir string) (VM, error) {
		vm, err := booter.Boot(ctx, c, runDir)
		if err != nil {
			return nil, err
		}
		rec, err := runrec.Create(runDir, "bisect-"+c.Name, time.Now())
		if err != nil {
			return nil, err
		}
		return recordingVM{vm.(*fakeVM), rec}, nil
	})}
	script := "expect login:\nassert-output \"uname -r\" ^6\\.1\\.\n"
	require.NoError(t, vp.UsePredicate(&Predicate{Kind: PredicateScript, ScriptPath: "check.script", ScriptText: script}))
	res, err := Run(context.Background(), quickConfig(t, dir, 6, 1, 0), vp)
	require.NoError(t, err)
	require.Equal(t, 3, res.FirstBad)
	require.NotNil(t, res.RunDiff)
	require.NotNil(t, res.RunDiff.Diff, res.RunDiff.Note)
	var txt bytes.Buffer
	require.NoError(t, WriteTextReport(&txt, res))
	out := txt.String()
	require.NotContains(t, out, rundiff.NoDifferences)
	require.Contains(t, out, "predicate (script check.script): A good, B bad")
	require.Contains(t, out, "! check.script:2 assert-output uname -r ~ /^6\\.1\\./\n"+
		"    A: pass, exit 0, output \"6.1.0-47-amd64\\n\"\n"+
		"    B: fail, exit 0, output \"6.12.111+deb12-amd64\\n\": output does not match /^6\\.1\\./\n")
	require.Contains(t, out, "outcome: pass -> bad")
	md, err := runrec.ReadMetadata(res.RunDiff.Bad)
	require.NoError(t, err)
	require.Equal(t, runrec.Bad, md.Outcome)
	require.Equal(t, "check.script:2 assert-output", md.Verdict.FailedStep)
}
