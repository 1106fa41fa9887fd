package capture

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/rundiff"
)

// On a systemd guest with every tool, every evidence item runs (dmesg aside: the
// journal has the kernel log), and a second Evidence replaces the first.
func TestEvidenceOnSystemdGuest(t *testing.T) {
	f := &fakeRunner{rules: []behaviour{
		{match: "/run/systemd/system", out: "@systemd\njournalctl\nsystemctl\nsystemd-analyze\nnetworkctl\nip\nlsblk\npre-nixos\ndmesg\n"},
		{match: "uname -r", out: "6.1.0-28-amd64\n"},
	}}
	dir := filepath.Join(t.TempDir(), "boot")
	idx, err := Evidence(context.Background(), f.exec(t), dir)
	require.NoError(t, err)
	ran := map[string]bool{}
	for _, e := range idx.Entries {
		if !e.Skipped {
			ran[e.Name] = true
		}
	}
	for _, n := range []string{EvKernelVersion, EvCmdline, EvJournal, EvJournalWarn, EvUnits, EvFailed, EvBlame, EvCriticalChain, EvNetworkctl, EvIPAddr, EvLsblk, EvPreNixosFiles, EvPreNixosPlan} {
		require.True(t, ran[n], "%s runs on a systemd guest", n)
	}
	require.False(t, ran[EvDmesg])
	require.Contains(t, strings.Join(f.calls, "\n"), "journalctl -b --no-pager -o short-monotonic -p warning")
	rec, err := rundiff.ReadCaptureIndex(dir)
	require.NoError(t, err)
	require.Len(t, rec.Captures, len(idx.Entries), "index.json lists every capture")
	require.Equal(t, "6.1.0-28-amd64\n", readFile(t, filepath.Join(dir, "kernel-version.txt")))

	_, err = Evidence(context.Background(), f.exec(t), dir)
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "kernel-version-2.txt"))
	require.True(t, os.IsNotExist(err), "taking evidence again replaces it")
	rec, err = rundiff.ReadCaptureIndex(dir)
	require.NoError(t, err)
	require.Len(t, rec.Captures, len(idx.Entries))
}

func TestParseFeatures(t *testing.T) {
	f := ParseFeatures("@systemd\r\nip\n\n lsblk \n")
	require.True(t, f.Systemd)
	require.True(t, f.Tools["ip"])
	require.True(t, f.Tools["lsblk"])
	require.False(t, f.Tools["journalctl"])
	require.False(t, ParseFeatures("ip\n").Systemd)
}
