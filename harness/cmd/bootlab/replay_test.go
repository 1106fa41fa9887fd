package main

import (
	"bytes"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/replay"
)

const consoles = "../../replay/testdata/nixos-consoles/"

// withReplay makes `bootlab run` start a replay guest of log instead of QEMU.
func withReplay(t *testing.T, log string) string {
	t.Helper()
	old := launcher
	launcher = replay.Launcher{Log: consoles + log}
	t.Cleanup(func() { launcher = old })
	t.Setenv("BOOTLAB_QEMU", "qemu-replay")
	iso := filepath.Join(t.TempDir(), "nixos.iso")
	require.NoError(t, os.WriteFile(iso, []byte("stand-in: the replay guest does not read it"), 0o644))
	return iso
}

func onlyRun(t *testing.T, notes string) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(notes, "*", runrec.MetadataFile))
	require.NoError(t, err)
	require.Len(t, dirs, 1, "one run directory under %s", notes)
	return filepath.Dir(dirs[0])
}

// TestRunOnRecordedNixOSConsole: `bootlab run --iso X --profile nixos` on NixOS 25.05's
// recorded console logs in, runs a command as root, powers off, passes; `bootlab log
// --plain` then prints the boot readably: stage banners, systemd's welcome, the
// prompts, without escape sequences or CRs.
func TestRunOnRecordedNixOSConsole(t *testing.T) {
	iso := withReplay(t, "nixos-25.05-autoinstall-full-boot.serial.log")
	notes := t.TempDir()
	var stdout, stderr fakeguest.Buffer // bootlab writes progress from several goroutines
	code := Main([]string{
		"run", "--iso", iso, "--profile", "nixos", "--accel", "tcg", "--verify=false", "--notes", notes, "--cmd", "id -un",
		"--disk", "16", // small: the run's artefact catalogue hashes the disk image
	}, &stdout, &stderr)
	require.Equal(t, exitPass, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	require.Contains(t, stdout.String(), "$ id -un\nroot\n[exit 0")
	require.Contains(t, stdout.String(), "verdict: pass")
	for _, ms := range []string{"stage1", "stage2", "init", "login_prompt", "root_shell"} {
		require.Contains(t, stdout.String(), "  "+ms+" ", "milestone %s in the summary", ms)
	}
	dir := onlyRun(t, notes)
	m, err := runrec.ReadMetadata(dir)
	require.NoError(t, err)
	require.Equal(t, runrec.Pass, m.Outcome)

	var plain, perr bytes.Buffer
	require.Equal(t, exitPass, Main([]string{"log", "--plain", dir}, &plain, &perr), perr.String())
	p := plain.String()
	for _, want := range []string{"<<< NixOS Stage 1 >>>", "<<< NixOS Stage 2 >>>", "Welcome to NixOS 25.05 (Warbler)!",
		"nixos login: nixos (automatic login)", "[nixos@nixos:~]$ ", "[root@nixos:~]# "} {
		require.Contains(t, p, want)
	}
	require.NotContains(t, p, "\x1b")
	require.NotContains(t, p, "\r")
	require.NotContains(t, p, "0;nixos@nixos", "the OSC window title is not text")
	var raw bytes.Buffer
	require.Equal(t, exitPass, Main([]string{"log", dir}, &raw, &perr))
	require.Contains(t, raw.String(), "\x1b]0;nixos@nixos: ~\a", "without --plain the bytes are as the guest sent them")
}

// TestRunQEMUDiskLockIsEnvironmentError: QEMU refusing to start on a locked disk image
// (the third recording) ends `bootlab run` with exit status 2 and QEMU's own words, and
// the run is recorded as an environment error, not a failed boot.
func TestRunQEMUDiskLockIsEnvironmentError(t *testing.T) {
	iso := withReplay(t, "qemu-disk-lock-failure.serial.log")
	notes := t.TempDir()
	var stdout, stderr fakeguest.Buffer // bootlab writes progress from several goroutines
	code := Main([]string{"run", "--iso", iso, "--accel", "tcg", "--notes", notes, "--disk", "16"}, &stdout, &stderr)
	require.Equal(t, exitUsage, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	require.Contains(t, stderr.String(), `Failed to get "write" lock`)
	require.Contains(t, stderr.String(), "Is another process using the image")
	require.Contains(t, stderr.String(), "exit status: exit status 1")
	m, err := runrec.ReadMetadata(onlyRun(t, notes))
	require.NoError(t, err)
	require.Equal(t, runrec.Error, m.Outcome)
	require.True(t, strings.Contains(m.Error, "locked by another process"), m.Error)
}
