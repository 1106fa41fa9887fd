package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/cacheprune"
)

func TestCacheListAndPrune(t *testing.T) {
	root := t.TempDir()
	t.Setenv("BOOTLAB_CACHE", root)
	old := time.Now().Add(-30 * 24 * time.Hour)
	mk := func(rel string, size int, mt time.Time) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, make([]byte, size), 0o644))
		require.NoError(t, os.Chtimes(p, mt, mt))
	}
	mk("warm-states/old.state", 4096, old)
	mk("warm-states/old.state.json", 10, old)
	mk("warm-states/new.state", 4096, time.Now())
	mk("isos/abc.iso", 2048, old)

	code, out, errs := run("cache")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "KIND")
	require.Regexp(t, `warm-state\s+4\.0 KiB\s+30d ago\s+-\s+warm-states/old.state`, out)
	require.Regexp(t, `warm-state\s+4\.0 KiB\s+just now\s+used .* ago \(within 6h0m0s\)\s+warm-states/new.state`, out)
	require.Contains(t, out, "downloaded-iso")
	require.Contains(t, out, "total 10.0 KiB in 3 entries")

	code, out, errs = run("cache", "--json")
	require.Equal(t, 0, code, errs)
	var es []cacheprune.Entry
	require.NoError(t, json.Unmarshal([]byte(out), &es))
	require.Len(t, es, 3)

	// Usage errors exit 2 and remove nothing.
	for _, args := range [][]string{{"cache", "prune", "--keep-days", "-1"}, {"cache", "prune", "--max-size", "lots"}, {"cache", "prune", "--max-size", "0"}, {"cache", "prune", "x"}, {"cache", "x"}} {
		code, _, errs = run(args...)
		require.Equal(t, 2, code, "%v: %s", args, errs)
	}
	require.FileExists(t, filepath.Join(root, "warm-states/old.state"))

	code, out, errs = run("cache", "prune", "--keep-days", "7", "--dry-run")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "would remove warm-state")
	require.FileExists(t, filepath.Join(root, "warm-states/old.state"))

	code, out, errs = run("cache", "prune", "--keep-days", "7")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "removed 2 entries; kept 1, 1 of them in use")
	require.NoFileExists(t, filepath.Join(root, "warm-states/old.state"))
	require.NoFileExists(t, filepath.Join(root, "warm-states/old.state.json"))
	require.NoFileExists(t, filepath.Join(root, "isos/abc.iso"))
	require.FileExists(t, filepath.Join(root, "warm-states/new.state"), "used just now: in use")
}
