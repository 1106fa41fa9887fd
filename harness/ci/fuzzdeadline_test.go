package ci

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// make test's fuzzing tells Go 1.26's coordinator reporting its own -fuzztime deadline
// (the log of a real make test run on 2026-12-06, FuzzPlanFileGate at 11 s with no
// input written) from a finding whose message also mentions a deadline but names what
// failed and writes its input: only the first is let through.
func TestFuzzDeadlineTellsTheCoordinatorFromAFinding(t *testing.T) {
	script := filepath.Join(repoRoot(t), ".ci", "fuzz-deadline.sh")
	run := func(log string) error {
		return exec.Command("bash", script, filepath.Join("testdata", "fuzzlogs", log), "FuzzPlanFileGate").Run()
	}
	require.NoError(t, run("coordinator-deadline.log"), "the coordinator's own deadline, no input written")
	err := run("failing-input.log")
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "a failing input is a finding")
	require.Equal(t, 1, ee.ExitCode())
}
