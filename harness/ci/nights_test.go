package ci

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// shardWithEvidence writes what a nightly shard uploads for the shared "standard"
// machine: a finished run with its boot evidence (rundiff's testdata, extra replacing
// some captures) and its ledger line. It returns the run directory's name.
func shardWithEvidence(t *testing.T, dir string, started time.Time, o runrec.Outcome, boot string, extra map[string]string) string {
	t.Helper()
	r, err := runrec.Create(dir, "standard", started)
	require.NoError(t, err)
	for i, m := range []string{"spawn", "login_prompt", "root_shell", "ssh"} {
		require.NoError(t, r.Milestone(m, started.Add(time.Duration(10*(i+1))*time.Second)))
	}
	require.NoError(t, r.Scenario(runrec.Scenario{Name: "TestCleanDisk", Outcome: o}))
	ev := filepath.Join(r.Dir, filepath.FromSlash(rundiff.EvidenceDir))
	require.NoError(t, os.MkdirAll(ev, 0o755))
	src := filepath.Join(repoRoot(t), "artifacts", "rundiff", "testdata", "evidence", boot)
	ents, err := os.ReadDir(src)
	require.NoError(t, err)
	var recs []rundiff.CaptureRecord
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), ".txt")
		body, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		if x, ok := extra[name]; ok {
			body = []byte(x)
		}
		require.NoError(t, os.WriteFile(filepath.Join(ev, e.Name()), body, 0o644))
		recs = append(recs, rundiff.CaptureRecord{Set: "boot", Name: name, File: e.Name(), Size: len(body)})
	}
	require.NoError(t, rundiff.AppendCaptureIndex(ev, recs))
	require.NoError(t, r.Finish(o, "", started.Add(90*time.Second)))
	require.NoError(t, runrec.AppendLedger(runrec.DefaultLedger(dir), r.LedgerEntry()))
	return filepath.Base(r.Dir)
}

// TestNightlyReportExplainsARedNight runs nightly.yml's report job as written on
// three consecutive nights that share the runner's state (its cache store carries the
// ledger of earlier nights, as the Actions cache does), each night with its own
// artefact store holding one shard. Nights 1 and 2 pass; night 3's shard has
// pre-nixos.service failed. Night 3's job summary must show the failing scenario, its
// run directory and artefact, the diff against night 2's pass naming the unit and its
// journal line, and the nights red and green. Each run needs its own run id: with one
// for all, night 2's ledger save is refused (the key exists) and night 3 diffs against
// night 1 and forgets night 2.
func TestNightlyReportExplainsARedNight(t *testing.T) {
	ws, _ := cleanClone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	jobs := loadJobs(t, ws)
	var report Job
	for _, j := range jobs {
		if j.Matches("nightly/report") {
			report = j
		}
	}
	require.Equal(t, "report", report.ID)
	state := t.TempDir()
	t0 := time.Date(2026, 12, 4, 2, 17, 0, 0, time.UTC)
	// The runner picks each run's id (Runner.RunID left empty, as cilocal leaves it).
	night := func(n int, o runrec.Outcome, boot string, extra map[string]string) (run, summary, id string) {
		artifacts := t.TempDir()
		run = shardWithEvidence(t, filepath.Join(artifacts, "work-notes-shard-1"), t0.Add(time.Duration(n)*24*time.Hour), o, boot, extra)
		var log bytes.Buffer
		r := &Runner{Repo: ws, HeadOnly: true, State: state, Artifacts: artifacts, Out: &log}
		res := r.Run(ctx, report)
		require.NoError(t, res.Err, "night %d's report job:\n%s", n, tail(log.String(), 6000))
		b, err := os.ReadFile(filepath.Join(state, "work", report.slug(), "_temp", "step-summary.md"))
		require.NoError(t, err)
		// The shard's runner is gone by the next night: what the next night diffs
		// against must come from the cache.
		require.NoError(t, os.RemoveAll(artifacts))
		return run, string(b), r.RunID
	}
	_, s1, _ := night(1, runrec.Pass, "boot1", nil)
	require.Contains(t, s1, "## Tonight: green")
	pass2, s2, _ := night(2, runrec.Pass, "boot2", nil)
	require.Contains(t, s2, "## Tonight: green")
	red, s3, id3 := night(3, runrec.Fail, "boot1", map[string]string{
		"systemctl-failed": "  pre-nixos.service loaded failed failed pre-nixos disk provisioner\n",
		"journal-warnings": "Dec 07 02:18:01 fixture systemd[1]: Failed to start pre-nixos.service - pre-nixos disk provisioner.\n",
	})
	t.Logf("night 3's summary:\n%s", s3)
	require.Contains(t, s3, "## Tonight: red")
	require.Contains(t, s3, "### TestCleanDisk: fail")
	require.Contains(t, s3, "Run directory `"+red+"`")
	require.Contains(t, s3, "[`work-notes-merged`](https://github.com/bootlab/bootlab/actions/runs/"+id3+")", "the summary links the run's artefacts")
	require.Contains(t, s3, "Compared with the last pass `"+pass2+"`", "the last pass is night 2's, which only night 2's saved ledger knows")
	require.Contains(t, s3, "units failed: pre-nixos.service")
	require.Contains(t, s3, "Failed to start pre-nixos.service")
	require.Contains(t, s3, "| 🔴 red | 1 | TestCleanDisk |")
	require.Equal(t, 2, strings.Count(s3, "| 🟢 green |"), "nights 1 and 2 are listed green")
	require.Contains(t, s3, "## Scenarios", "the run table follows")
}
