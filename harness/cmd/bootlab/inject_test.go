package main

import (
	"bytes"
	"encoding/json"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/inject"
)

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
	vmgate.VM(t)
	notes := t.TempDir()
	var stdout, stderr fakeguest.Buffer
	code := Main([]string{"run", "--image", "mini", "--inject", "pre-nixos", "--disk", "2100", "--disk", "2300", "--notes", notes}, &stdout, &stderr)
	require.Equal(t, exitPass, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	dir := onlyRun(t, notes)
	inj := filepath.Join(dir, injectDir)
	sum, err := os.ReadFile(filepath.Join(inj, inject.SHA256File))
	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{64}  pre-nixos\n$`), string(sum))
	require.Contains(t, stdout.String(), "sha256 "+string(sum[:64])+") is "+inject.DefaultPath+" in the guest (over virtio-serial)")
	plan, err := os.ReadFile(filepath.Join(inj, inject.PlanFile))
	require.NoError(t, err)
	var p map[string]any
	require.NoError(t, json.Unmarshal(plan, &p), "the plan is JSON (logs went to %s):\n%s", inject.LogFile, plan)
	require.Contains(t, string(plan), "vda")
	require.Contains(t, string(plan), "vdb")
	logs, err := os.ReadFile(filepath.Join(inj, inject.LogFile))
	require.NoError(t, err)
	require.Contains(t, string(logs), "pre_nixos.inventory.scanned")
	missing, err := os.ReadFile(filepath.Join(inj, inject.MissingFile))
	require.NoError(t, err, "busybox lacks some of pre-nixos's tools")
	require.Contains(t, string(missing), "findmnt")
	require.Contains(t, stdout.String(), "does not have: ")
	require.Contains(t, stdout.String(), "the plan matches the guest's /sys/block (2 candidate disks)")
}
