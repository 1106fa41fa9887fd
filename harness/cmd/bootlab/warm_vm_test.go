package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

// TestDemoStartsWarm: the first `bootlab demo` on an image boots it once held at
// getty.target, saves the guest and goes on from the restored state; the second resumes
// from that state without booting. Both pass the whole pre-nixos check on their own
// blank disk (storage applied, LAN, SSH as root), which proves the provisioner ran after
// the restore: the restore refuses a saved guest whose pre-nixos had already run.
// --memory 1088 gives the test a state of its own in the cache.
func TestDemoStartsWarm(t *testing.T) {
	vmgate.VM(t)
	states := lab.WarmStateDir(labtest.Config().Cache)
	removeStates := func() {
		sides, _ := filepath.Glob(filepath.Join(states, "*.state.json"))
		for _, s := range sides {
			b, _ := os.ReadFile(s)
			if strings.Contains(string(b), "mem=1088 ") {
				_ = os.Remove(strings.TrimSuffix(s, ".json"))
				_ = os.Remove(s)
			}
		}
	}
	removeStates()
	t.Cleanup(removeStates) // ~280 MiB each

	demo := func(want ...string) (runrec.Metadata, string) {
		t.Helper()
		notes := t.TempDir()
		var stdout, stderr fakeguest.Buffer
		code := Main([]string{"demo", "--notes", notes, "--memory", "1088", "--timeout-scale", "2"}, &stdout, &stderr)
		require.Equal(t, exitPass, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		for _, w := range want {
			require.Contains(t, stderr.String(), w)
		}
		require.NotContains(t, stderr.String(), "cold boot", "the demo started warm")
		require.Contains(t, stdout.String(), "verdict: pass")
		var dir string
		for _, line := range strings.Split(stdout.String(), "\n") {
			if d, ok := strings.CutPrefix(line, "run directory: "); ok {
				dir = d
			}
		}
		require.NotEmpty(t, dir)
		m, err := runrec.ReadMetadata(dir)
		require.NoError(t, err)
		// The restored run's console starts at the restore: pre-nixos's own lines on it
		// prove the provisioner ran in this run, on this run's disk.
		serial, err := os.ReadFile(filepath.Join(dir, lab.SerialLog))
		require.NoError(t, err)
		require.Contains(t, string(serial), "pre-nixos: storage applied", "pre-nixos ran after the restore")
		return m, stderr.String()
	}

	first, _ := demo("booting once, held at getty.target", "restoring it")
	second, _ := demo("warm start: restoring the state saved")
	for _, m := range []runrec.Metadata{first, second} {
		var names []string
		for _, ms := range m.Milestones {
			names = append(names, ms.Name)
		}
		// A resumed guest prints no kernel banner; the run has the release and then
		// every pre-nixos milestone.
		require.NotContains(t, names, "kernel", "the guest was restored, not booted")
		for _, n := range []string{"root_shell", "released", "storage_status", "ipv4", "ssh"} {
			require.Contains(t, names, n)
		}
		require.Contains(t, m.Image.Append, lab.HoldAppend, "the record says the guest was held")
		b, _ := json.Marshal(m.Milestones)
		t.Logf("warm demo milestones: %s", b)
	}
}
