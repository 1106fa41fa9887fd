package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// mkRun writes a finished run with one evidence capture and appends it to the ledger.
func mkRun(t *testing.T, notes string, o runrec.Outcome, started time.Time, failed string) string {
	t.Helper()
	r, err := runrec.Create(notes, "fixture", started)
	require.NoError(t, err)
	require.NoError(t, r.Milestone("root_shell", started.Add(80*time.Second)))
	require.NoError(t, r.Finish(o, "", started.Add(100*time.Second)))
	dir := r.Path(rundiff.EvidenceDir)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "systemctl-failed.txt"), []byte(failed), 0o644))
	require.NoError(t, rundiff.AppendCaptureIndex(dir, []rundiff.CaptureRecord{{Name: "systemctl-failed", File: "systemctl-failed.txt", Size: len(failed)}}))
	require.NoError(t, os.WriteFile(r.Path(runrec.SerialLog), []byte("login: "), 0o644))
	require.NoError(t, runrec.AppendLedger(runrec.DefaultLedger(notes), r.LedgerEntry()))
	return r.Dir
}

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDiffCommand(t *testing.T) {
	notes := t.TempDir()
	t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	a := mkRun(t, notes, runrec.Pass, t0, "")
	a2 := mkRun(t, notes, runrec.Pass, t0.Add(time.Hour), "")
	b := mkRun(t, notes, runrec.Fail, t0.Add(2*time.Hour), "pre-nixos.service loaded failed failed pre-nixos\n")

	code, out, _ := run("diff", a, a2)
	require.Equal(t, exitPass, code)
	require.Contains(t, out, "no differences")

	code, out, _ = run("diff", a, b)
	require.Equal(t, exitFail, code, "differences exit 1, as diff(1)")
	require.Contains(t, out, "units failed: pre-nixos.service")

	code, out, _ = run("diff", "--against-last-pass", b, "--json")
	require.Equal(t, exitFail, code)
	var d rundiff.Diff
	require.NoError(t, json.Unmarshal([]byte(out), &d))
	require.Equal(t, a2, d.A.Dir, "the newest earlier pass")
	require.Equal(t, []string{"pre-nixos.service"}, d.Units.Failed)
}

func TestDiffAndPromoteUsageErrors(t *testing.T) {
	notes := t.TempDir()
	a := mkRun(t, notes, runrec.Pass, time.Now(), "")
	docs := filepath.Join(t.TempDir(), "docs")
	for _, args := range [][]string{
		{"diff"},
		{"diff", a},
		{"diff", a, a, a},
		{"diff", a, filepath.Join(notes, "nope")},
		{"diff", "--against-last-pass", a}, // no earlier pass
		{"diff", "--bogus", a, a},
		{"promote"},
		{"promote", filepath.Join(notes, "nope"), "--docs", docs},
		{"promote", a, "--docs", docs, "--against", filepath.Join(notes, "nope")},
	} {
		code, _, errs := run(args...)
		require.Equal(t, exitUsage, code, "%v: %s", args, errs)
	}
	_, err := os.Stat(docs)
	require.True(t, os.IsNotExist(err), "a usage error writes nothing")
}

func TestPromoteCommand(t *testing.T) {
	notes := t.TempDir()
	t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	mkRun(t, notes, runrec.Pass, t0, "")
	b := mkRun(t, notes, runrec.Fail, t0.Add(time.Hour), "pre-nixos.service loaded failed failed pre-nixos\n")
	docs := filepath.Join(t.TempDir(), "docs")
	code, out, errs := run("promote", b, "--docs", docs)
	require.Equal(t, exitPass, code, errs)
	require.Contains(t, out, "2026-12-02T06-00-00Z-fixture.md")
	md, err := os.ReadFile(filepath.Join(docs, "test-reports", "2026-12-02T06-00-00Z-fixture.md"))
	require.NoError(t, err)
	require.Contains(t, string(md), "units failed: pre-nixos.service", "the diff against the last pass is in the report")
	log, err := os.ReadFile(filepath.Join(docs, "boot-logs", "2026-12-02T06-00-00Z-fixture.log"))
	require.NoError(t, err)
	require.Equal(t, "login: ", string(log))
}
