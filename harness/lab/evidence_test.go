package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/harness/fakeguest"
)

// busybox answers the feature probe like a mini image: no systemd, a few tools.
func busybox(_ *fakeguest.Shell, cmd string) ([]byte, int) {
	switch {
	case strings.Contains(cmd, "/run/systemd/system"):
		return []byte("ip\ndmesg\n"), 0
	case strings.Contains(cmd, "uname -r"):
		return []byte("6.1.0-fake\n"), 0
	case strings.Contains(cmd, "/proc/cmdline"):
		return []byte("console=ttyS0\n"), 0
	case strings.Contains(cmd, "ip -j addr"):
		return []byte("1: lo: <LOOPBACK,UP> mtu 65536\n"), 0
	case strings.Contains(cmd, "dmesg"):
		return []byte("[    0.000000] Linux version 6.1.0-fake\n"), 0
	}
	return nil, -1
}

// A passing run takes the boot evidence by default, and an image without systemd gets
// notes, not errors, for what it cannot answer.
func TestPassingRunTakesEvidence(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "getty", Commands: busybox})
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	_, err = l.Login(context.Background())
	require.NoError(t, err)
	require.NoError(t, l.Close(context.Background(), nil))

	dir := filepath.Join(l.Dir(), filepath.FromSlash(rundiff.EvidenceDir))
	idx, err := rundiff.ReadCaptureIndex(dir)
	require.NoError(t, err)
	byName := map[string]rundiff.CaptureRecord{}
	for _, c := range idx.Captures {
		byName[c.Name] = c
	}
	require.Equal(t, 0, byName["kernel-version"].Status)
	require.Equal(t, "6.1.0-fake\n", readFile(t, filepath.Join(dir, byName["kernel-version"].File)))
	require.Positive(t, byName["kernel-version"].Size)
	require.Equal(t, 0, byName["ip-addr"].Status)
	require.Equal(t, 0, byName["dmesg"].Status, "without a journal the kernel log is taken")
	for _, n := range []string{"journal", "systemctl-list-units", "systemd-analyze-blame", "networkctl-status"} {
		require.True(t, byName[n].Skipped, n)
		require.Equal(t, "the image does not run systemd", byName[n].Note, n)
		require.Empty(t, byName[n].Err, "%s is a note, not an error", n)
	}
	require.Equal(t, "lsblk is not installed", byName["lsblk"].Note)
	m := readMeta(t, l.Dir())
	_, ok := m.Milestone("captures")
	require.True(t, ok, "the evidence's cost is recorded as the captures span")
	html, err := os.ReadFile(filepath.Join(l.Dir(), "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), "kernel-version")
}

func TestCapturesNoneTakesNoEvidence(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "getty", Commands: busybox})
	cfg.Captures = CapturesNone
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	_, err = l.Login(context.Background())
	require.NoError(t, err)
	require.NoError(t, l.Close(context.Background(), nil))
	_, err = os.Stat(filepath.Join(l.Dir(), filepath.FromSlash(rundiff.EvidenceDir)))
	require.True(t, os.IsNotExist(err), "no evidence with --captures none")
}

func TestCapturesFailureOnlyOnFailure(t *testing.T) {
	for _, fail := range []bool{false, true} {
		cfg := fakeSpec(t, fakeguest.Behaviour{Login: "getty", Commands: busybox})
		cfg.Captures = CapturesFailure
		l, err := startFake(context.Background(), cfg)
		require.NoError(t, err)
		_, err = l.Login(context.Background())
		require.NoError(t, err)
		var verdict error
		if fail {
			verdict = os.ErrInvalid
		}
		require.NoError(t, l.Close(context.Background(), verdict))
		_, err = os.Stat(filepath.Join(l.Dir(), filepath.FromSlash(rundiff.EvidenceDir), rundiff.IndexFile))
		require.Equal(t, fail, err == nil, "failed=%v: evidence taken=%v", fail, err == nil)
	}
}

func TestParseCaptureMode(t *testing.T) {
	for in, want := range map[string]CaptureMode{"": CapturesAlways, "always": CapturesAlways, "failure": CapturesFailure, "none": CapturesNone} {
		got, err := ParseCaptureMode(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err := ParseCaptureMode("sometimes")
	require.Error(t, err)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}
