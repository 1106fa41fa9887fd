package ci

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// make test skips fuzzing a package whose sources hash as at its last green fuzz run;
// the hash must not depend on where the checkout is, or every fresh clone (make test's,
// the CI runner's, another worktree) fuzzes everything again. Two clones of one commit
// at different paths hash a package alike; a changed source does not.
func TestFuzzSourceHashIgnoresTheCheckoutPath(t *testing.T) {
	requireTool(t, "git", "apt-get install git")
	root := repoRoot(t)
	hash := func(dir string) string {
		t.Helper()
		// source_hash as .ci/fuzz.sh defines it, with the variables it sets first.
		script := `eval "$(sed -n '/^source_hash()/,/^}/p' .ci/fuzz.sh)"; GO=go; root=$(go list -m -f '{{.Dir}}'); source_hash ./provisioner/status`
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return strings.TrimSpace(string(out))
	}
	var dirs []string
	for _, name := range []string{"a", "clone-b"} {
		d := filepath.Join(t.TempDir(), name)
		out, err := exec.Command("git", "clone", "-q", "--no-hardlinks", root, d).CombinedOutput()
		require.NoError(t, err, "%s", out)
		dirs = append(dirs, d)
	}
	h := hash(dirs[0])
	require.Regexp(t, `^[0-9a-f]{64}$`, h)
	require.Equal(t, h, hash(dirs[1]), "the same commit at another path")
	cmd := exec.Command("bash", "-c", "echo '// changed' >> provisioner/status/status.go")
	cmd.Dir = dirs[1]
	require.NoError(t, cmd.Run())
	require.NotEqual(t, h, hash(dirs[1]), "a changed source")
}
