package labtest

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// Diff is bootlab diff of two run directories (or snapshots of them): what changed in
// their boot evidence, boot-to-boot noise normalised away.
func Diff(t testing.TB, a, b string) *rundiff.Diff {
	t.Helper()
	d, err := rundiff.CompareDirs(a, b, rundiff.Options{})
	require.NoError(t, err, "bootlab diff %s %s", a, b)
	return d
}

// LastPass is the run bootlab diff --against-last-pass compares run with: the last
// passing run of the same slug in the ledger under notes.
func LastPass(t testing.TB, notes, slug, run string) string {
	t.Helper()
	last, err := rundiff.LastPass(filepath.Join(notes, runrec.LedgerFile), slug, run)
	require.NoError(t, err, "finding the last pass before %s", run)
	return last
}
