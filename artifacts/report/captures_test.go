package report

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// A passing run's report lists its evidence with size and time, notes for what did not
// apply, and the diff against the last pass.
func TestRenderCapturesTableAndDiff(t *testing.T) {
	root := t.TempDir()
	base, err := runrec.Create(root, "fixture", t0)
	require.NoError(t, err)
	require.NoError(t, base.Finish(runrec.Pass, "", t0.Add(time.Minute)))
	r, err := runrec.Create(root, "fixture", t0.Add(time.Hour))
	require.NoError(t, err)
	require.NoError(t, r.Finish(runrec.Pass, "", t0.Add(time.Hour+time.Minute)))
	dir := r.Path(rundiff.EvidenceDir)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "journal.txt"), []byte("[ 1.0] fixture systemd[1]: Started.\n"), 0o644))
	require.NoError(t, rundiff.AppendCaptureIndex(dir, []rundiff.CaptureRecord{
		{Set: "boot", Name: "journal", Command: "journalctl -b", File: "journal.txt", Size: 2048, DurationMS: 1234},
		{Set: "boot", Name: "lsblk", Command: "lsblk -J -O", Status: -1, Skipped: true, Note: "lsblk is not installed"},
	}))
	d, err := rundiff.CompareDirs(base.Dir, r.Dir, rundiff.Options{})
	require.NoError(t, err)
	require.NoError(t, d.WriteJSONFile(r.Path(rundiff.DiffFile)))

	out, err := Render(context.Background(), r.Dir, Options{Now: t0})
	require.NoError(t, err)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	html := string(b)
	for _, want := range []string{
		`<a href="./captures/boot/journal.txt">journal</a>`, "2.0 KiB", "1.234s",
		"lsblk is not installed", "n/a", "2 captures, 2.0 KiB in 1.234s",
		"Compared with the last pass", base.Dir,
	} {
		require.Contains(t, html, want)
	}
	require.NotContains(t, html, "<summary>captures/boot/index.json</summary>", "the index is the table, not a file block")
}
