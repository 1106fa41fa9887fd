package ci

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCacheKeysPerWorkflowAndJob: every job that saves an Actions cache saves it under a
// key whose prefix names its workflow and job, and no two jobs share a prefix, so no job
// decides what another restores. Each image cache save is preceded by bootlab cache
// prune, so what rides in the cache is bounded.
func TestCacheKeysPerWorkflowAndJob(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), ".github", "workflows", "*.yml"))
	require.NoError(t, err)
	owner := map[string]string{} // literal key prefix -> workflow/job
	saves := 0
	for _, file := range files {
		wf, err := readWorkflow(file)
		require.NoError(t, err)
		wfName := strings.TrimSuffix(wf.file, ".yml")
		for _, name := range wf.jobNames() {
			id := wf.file + "/" + name
			pruned := false
			for i, s := range wf.Jobs[name].Steps {
				if strings.Contains(s.Run, "bootlab cache prune") {
					pruned = true
				}
				action, _, _ := strings.Cut(s.Uses, "@")
				if action != "actions/cache/save" {
					continue
				}
				saves++
				key := s.With["key"]
				prefix, _, _ := strings.Cut(key, "${{")
				if prefix == "bootlab-ledger-" {
					// The nightly ledger: one producer (the report job), keyed by run.
					require.Equal(t, "nightly.yml/report", id)
				} else if !strings.Contains(prefix, "-"+wfName+"-"+name+"-") {
					t.Errorf("%s %s saves under %q, whose prefix does not name its workflow and job (-%s-%s-)", id, s.label(i), key, wfName, name)
				}
				if prev, ok := owner[prefix]; ok && prev != id {
					t.Errorf("%s and %s save under the same key prefix %q", prev, id, prefix)
				}
				owner[prefix] = id
				if s.With["path"] == "${{ env.BOOTLAB_CACHE }}" && !pruned {
					t.Errorf("%s saves the image cache without running bootlab cache prune first", id)
				}
			}
		}
	}
	require.GreaterOrEqual(t, saves, 4, "the image caches of ci, nightly and bisect and the ledger are found")
}
