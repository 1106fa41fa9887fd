package night

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

// evidence is a clean boot's captures (rundiff's testdata), with extra replacing some.
func evidence(t *testing.T, boot string, extra map[string]string) map[string]string {
	t.Helper()
	dir := filepath.Join("..", "rundiff", "testdata", "evidence", boot)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	c := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		c[strings.TrimSuffix(e.Name(), ".txt")] = string(b)
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// shardRun writes a finished run of the shared "standard" machine into notes, as a
// nightly shard leaves it, with its ledger line, and returns its directory.
func shardRun(t *testing.T, notes string, started time.Time, o runrec.Outcome, captures map[string]string) string {
	t.Helper()
	r, err := runrec.Create(notes, "standard", started)
	require.NoError(t, err)
	for i, m := range []string{"spawn", "login_prompt", "root_shell", "ssh"} {
		require.NoError(t, r.Milestone(m, started.Add(time.Duration(10*(i+1))*time.Second)))
	}
	require.NoError(t, r.Scenario(runrec.Scenario{Name: "TestCleanDisk", Outcome: o}))
	require.NoError(t, r.Scenario(runrec.Scenario{Name: "TestEmbeddedKey", Outcome: runrec.Pass}))
	dir := filepath.Join(r.Dir, filepath.FromSlash(rundiff.EvidenceDir))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	var recs []rundiff.CaptureRecord
	for name, body := range captures {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".txt"), []byte(body), 0o644))
		recs = append(recs, rundiff.CaptureRecord{Set: "boot", Name: name, File: name + ".txt", Size: len(body)})
	}
	require.NoError(t, rundiff.AppendCaptureIndex(dir, recs))
	errText := ""
	if o != runrec.Pass {
		errText = "pre-nixos's checks (storage, LAN, SSH): pre-nixos did not finish\nmore"
	}
	require.NoError(t, r.Finish(o, errText, started.Add(90*time.Second)))
	require.NoError(t, os.WriteFile(filepath.Join(r.Dir, "disk0.img"), []byte("disk"), 0o644))
	require.NoError(t, runrec.AppendLedger(runrec.DefaultLedger(notes), r.LedgerEntry()))
	return r.Dir
}

// night runs one night: a shard's notes are written on "another machine" (a
// directory removed afterwards, as a CI job's is), merged into tonight's notes the
// way .ci/merge-notes.sh merges them (runs moved, ledger appended to the history's),
// then Report.
func runNight(t *testing.T, history, id string, at time.Time, o runrec.Outcome, captures map[string]string) (string, Night, string) {
	t.Helper()
	shard := filepath.Join(t.TempDir(), "shard-notes")
	dir := shardRun(t, shard, at, o, captures)
	notes := filepath.Join(t.TempDir(), "notes")
	require.NoError(t, os.MkdirAll(notes, 0o755))
	require.NoError(t, os.Rename(dir, filepath.Join(notes, filepath.Base(dir))))
	line, err := os.ReadFile(runrec.DefaultLedger(shard))
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(shard)) // the shard's runner is gone
	require.NoError(t, os.MkdirAll(history, 0o755))
	f, err := os.OpenFile(runrec.DefaultLedger(history), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	_, err = f.Write(line)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	var out bytes.Buffer
	n, err := Report(context.Background(), &out, Options{Notes: notes, History: history, ID: id, Artifact: "work-notes-merged",
		Link: "https://github.com/o/r/actions/runs/" + id, Now: at.Add(time.Hour)})
	require.NoError(t, err)
	return filepath.Base(dir), n, out.String()
}

// TestRedNightExplainsItself: three nights with a history that travels between them.
// The second breaks pre-nixos.service; its summary names the failing scenario, the run
// directory and its artefact, and the diff against the first night's pass names the
// failed unit, its journal line and the milestone that moved. The nights table marks
// it red between two greens, and the history keeps one last pass per slug.
func TestRedNightExplainsItself(t *testing.T) {
	history := t.TempDir()
	t0 := time.Date(2026, 12, 4, 2, 17, 0, 0, time.UTC)

	run1, n1, out1 := runNight(t, history, "101", t0, runrec.Pass, evidence(t, "boot1", nil))
	t.Logf("night 1:\n%s", out1)
	require.Equal(t, Green, n1.Outcome)
	require.Contains(t, out1, "## Tonight: green")
	require.DirExists(t, filepath.Join(history, run1), "night 1's pass is kept for night 2 to diff against")
	require.NoFileExists(t, filepath.Join(history, run1, "disk0.img"), "a kept pass carries no disk image")

	broken := evidence(t, "boot2", map[string]string{
		"systemctl-failed": "  pre-nixos.service loaded failed failed pre-nixos disk provisioner\n",
		"journal-warnings": "Dec 05 02:18:01 fixture systemd[1]: Failed to start pre-nixos.service - pre-nixos disk provisioner.\n",
	})
	run2, n2, out2 := runNight(t, history, "102", t0.Add(24*time.Hour), runrec.Fail, broken)
	t.Logf("night 2:\n%s", out2)
	require.Equal(t, Red, n2.Outcome)
	require.Equal(t, []string{"TestCleanDisk"}, n2.Failed)
	require.Contains(t, out2, "## Tonight: red")
	require.Contains(t, out2, "### TestCleanDisk: fail")
	require.Contains(t, out2, "Run directory `"+run2+"`")
	require.Contains(t, out2, "[`work-notes-merged`](https://github.com/o/r/actions/runs/102)")
	require.Contains(t, out2, "Compared with the last pass `"+run1+"`", "night 1's pass, kept in the history, is the last pass")
	require.Contains(t, out2, "Error: pre-nixos's checks (storage, LAN, SSH): pre-nixos did not finish\n")
	diff := out2[strings.Index(out2, fence):]
	require.Regexp(t, `(?s)unit.*pre-nixos\.service`, diff, "the diff names the failed unit")
	require.Contains(t, diff, "Failed to start pre-nixos.service", "the diff has the new journal line")
	require.Contains(t, out2, "| 2026-12-05 03:17 [102](https://github.com/o/r/actions/runs/102) | 🔴 red | 1 | TestCleanDisk |")
	require.Contains(t, out2, "| 2026-12-04 03:17 [101](https://github.com/o/r/actions/runs/101) | 🟢 green | 1 |  |")
	require.Less(t, strings.Index(out2, "[102]"), strings.Index(out2, "[101]"), "newest night first")
	require.DirExists(t, filepath.Join(history, run1), "a red night keeps the older pass of its slug")
	require.NoDirExists(t, filepath.Join(history, run2), "a failing run is not a pass to keep")

	run3, n3, out3 := runNight(t, history, "103", t0.Add(48*time.Hour), runrec.Pass, evidence(t, "boot1", nil))
	require.Equal(t, Green, n3.Outcome)
	require.Contains(t, out3, "🔴 red", "the red night stays in the table")
	require.Equal(t, 3, strings.Count(out3, "| 2026-12-0"), "three nights listed")
	require.DirExists(t, filepath.Join(history, run3))
	require.NoDirExists(t, filepath.Join(history, run1), "one kept pass per slug: the newest")

	// A report run again for the same night replaces its line, it does not add one.
	_, err := recordNight(history, Night{ID: "103", Outcome: Green, Time: t0.Add(49 * time.Hour)})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(history, NightsFile))
	require.NoError(t, err)
	require.Equal(t, 3, strings.Count(string(b), "\n"))
}

// TestNightWithoutRunsIsRed: shards that left no run directory are not a green night.
func TestNightWithoutRunsIsRed(t *testing.T) {
	var out bytes.Buffer
	n, err := Report(context.Background(), &out, Options{Notes: t.TempDir(), History: t.TempDir(), ID: "1"})
	require.NoError(t, err)
	require.Equal(t, Red, n.Outcome)
	require.Contains(t, out.String(), "the scenarios left no records")
}
