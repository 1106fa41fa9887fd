package main

import (
	"github.com/bootlab/bootlab/harness/fakeguest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Mistakes in --boot and --entry are usage errors, found before anything is built or
// booted.
func TestRunBootFlagUsageErrors(t *testing.T) {
	notes := t.TempDir()
	iso := filepath.Join(t.TempDir(), "x.iso")
	require.NoError(t, os.WriteFile(iso, []byte("not an ISO"), 0o644))
	for name, args := range map[string][]string{
		"boot on the mini image": {"--image", "mini", "--boot", "direct"},
		"entry on a kernel":      {"--kernel", iso, "--entry", "install"},
		"unknown boot path":      {"--iso", iso, "--boot", "sideways"},
		"entry through firmware": {"--iso", iso, "--boot", "firmware", "--entry", "install"},
		"missing ISO":            {"--iso", filepath.Join(notes, "absent.iso")},
		"direct without a menu":  {"--iso", iso, "--boot", "direct"},
		"an entry with no menu":  {"--iso", iso, "--entry", "install"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb fakeguest.Buffer
			code := Main(append([]string{"run", "--notes", notes}, args...), &out, &errb)
			require.Equal(t, exitUsage, code, "stderr: %s", errb.String())
			entries, err := os.ReadDir(notes)
			require.NoError(t, err)
			require.Empty(t, entries, "no run directory for a usage error")
		})
	}
}
