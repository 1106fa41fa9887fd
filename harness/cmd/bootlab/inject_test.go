package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// The log lines are pre-nixos's own, from an injection into the mini image (busybox,
// no util-linux).
func TestMissingToolsFromPreNixosLog(t *testing.T) {
	log := []byte(`{"timestamp":"2026-12-02T05:44:36.517796348Z","level":"WARN","event":"pre_nixos.command.failed","command":"findmnt -n -o SOURCE /iso","returncode":127,"duration_ms":5,"error":"findmnt: executable not found"}
{"timestamp":"2026-12-02T05:44:36.771997187Z","level":"WARN","event":"pre_nixos.command.failed","command":"findmnt -n -o SOURCE /run/archiso/bootmnt","returncode":127,"duration_ms":0,"error":"findmnt: executable not found"}
{"level":"WARN","event":"pre_nixos.command.failed","command":"lsblk -dnpo NAME,TYPE,RM","returncode":127,"error":"lsblk: executable not found"}
{"level":"WARN","event":"pre_nixos.command.failed","command":"mdadm --examine /dev/vda","returncode":1,"error":"exit status 1"}
pre-nixos: leaving out vda: too small (64 MiB, need at least 2.0 GiB)
`)
	require.Equal(t, []string{"findmnt", "lsblk"}, missingTools(log))
	require.Empty(t, missingTools([]byte("pre-nixos: planned\n")))
}

func TestInjectOnlyPreNixos(t *testing.T) {
	notes := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := Main([]string{"run", "--image", "mini", "--inject", "bash", "--notes", notes}, &stdout, &stderr)
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr.String(), "only pre-nixos can be injected")
	ents, err := os.ReadDir(notes)
	require.NoError(t, err)
	require.Empty(t, ents, "a usage error has no side effect: no run directory")
}

// TestRunInjectPreNixosOnMini carries pre-nixos into the mini image (busybox, no
// pre-nixos, no util-linux) with two blank disks of different sizes: the static binary
// crosses the frame channel, its sha256 is checked in the guest, and its --plan-only
// plan (both disks) and log are kept in the run directory, with the tools the baseline
// lacks named.
func TestRunInjectPreNixosOnMini(t *testing.T) {
	notes := t.TempDir()
	var stdout, stderr syncBuf
	code := Main([]string{"run", "--image", "mini", "--inject", "pre-nixos", "--disk", "2100", "--disk", "2300", "--notes", notes}, &stdout, &stderr)
	require.Equal(t, exitPass, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	dir := onlyRun(t, notes)
	inj := filepath.Join(dir, injectDir)
	sum, err := os.ReadFile(filepath.Join(inj, injectSHA256))
	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{64}  pre-nixos\n$`), string(sum))
	require.Contains(t, stdout.String(), "sha256 "+string(sum[:64])+") is "+injectedBinary)
	plan, err := os.ReadFile(filepath.Join(inj, injectPlan))
	require.NoError(t, err)
	var p map[string]any
	require.NoError(t, json.Unmarshal(plan, &p), "the plan is JSON (logs went to %s):\n%s", injectLog, plan)
	require.Contains(t, string(plan), "vda")
	require.Contains(t, string(plan), "vdb")
	logs, err := os.ReadFile(filepath.Join(inj, injectLog))
	require.NoError(t, err)
	require.Contains(t, string(logs), "pre_nixos.inventory.scanned")
	missing, err := os.ReadFile(filepath.Join(inj, injectMissing))
	require.NoError(t, err, "busybox lacks some of pre-nixos's tools")
	require.Contains(t, string(missing), "findmnt")
	require.Contains(t, stdout.String(), "does not have: ")
}
