package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Usage errors exit 2 before any side effect: no state directory is made.
func TestUsageErrorsExit2BeforeAnything(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cilocal")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	repo, err := filepath.Abs("../../../..")
	require.NoError(t, err)
	for _, args := range [][]string{
		{"-job", "ci/no-such-job"},
		{"-input", "novalue"},
		{"-no-such-flag"},
		{"extra"},
	} {
		state := filepath.Join(t.TempDir(), "state")
		cmd := exec.Command(bin, append([]string{"-repo", repo, "-state", state}, args...)...)
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "%v: %s", args, out)
		require.Equal(t, 2, cmd.ProcessState.ExitCode(), "%v: %s", args, out)
		_, statErr := os.Stat(state)
		require.True(t, os.IsNotExist(statErr), "%v made %s", args, state)
	}
	list := exec.Command(bin, "-repo", repo, "-list", "-job", "nightly/scenarios:shard=2")
	out, err = list.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "nightly/scenarios shard=2\n", string(out))
}
