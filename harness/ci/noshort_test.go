package ci

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// shortFlag is go test's -short as a command line would pass it.
var shortFlag = regexp.MustCompile(`(^|[\s'"])-(test\.)?short(=|\s|$|['"])`)

// TestNoRunPassesShort: `go test -short` skips every VM test, so nothing that make test
// or CI runs may pass it (a CI=true run fails on the skips anyway: labtest/vmgate).
func TestNoRunPassesShort(t *testing.T) {
	root := repoRoot(t)
	files := []string{filepath.Join(root, "Makefile")}
	for _, glob := range []string{".ci/*", ".github/workflows/*.yml"} {
		m, err := filepath.Glob(filepath.Join(root, glob))
		require.NoError(t, err)
		files = append(files, m...)
	}
	require.Greater(t, len(files), 4, "the Makefile, .ci scripts and workflows are found")
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.False(t, shortFlag.Match(b), "%s passes -short: VM tests would be skipped", f)
	}
	// The pattern itself: what it must and must not catch.
	require.True(t, shortFlag.MatchString("go test -short ./..."))
	require.True(t, shortFlag.MatchString("go test -test.short=true ./x"))
	require.False(t, shortFlag.MatchString("git rev-parse --short HEAD"))
}
