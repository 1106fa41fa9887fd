package bisect

import (
	"bytes"
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
