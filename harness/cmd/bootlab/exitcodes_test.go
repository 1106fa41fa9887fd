package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/fakeguest"
)

// TestExitCodesAsDocumented holds bootlab to main.go's promise - 0 pass, 1 the verdict
// is a failure, 2 usage or environment error (missing tool, unreadable image, ...) -
// with one case of each kind that needs no VM; an exit 2 leaves no run directory.
func TestExitCodesAsDocumented(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(text, []byte("no image at all\n"), 0o644))
	empty := filepath.Join(dir, "empty.iso")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	fakeQEMU := filepath.Join(dir, "qemu")
	require.NoError(t, os.WriteFile(fakeQEMU, []byte("#!/bin/sh\nexit 1\n"), 0o755))
	noTools := t.TempDir() // a PATH with nothing on it

	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		says string
	}{
		{"version", nil, []string{"version"}, exitPass, ""},
		{"help", nil, []string{"help", "run"}, exitPass, ""},
		{"no command", nil, nil, exitUsage, "usage"},
		{"unknown command", nil, []string{"runn"}, exitUsage, `unknown command "runn"`},
		{"bad flag", nil, []string{"run", "--bogus"}, exitUsage, "flag provided but not defined"},
		{"malformed environment", map[string]string{"BOOTLAB_TIMEOUT_SCALE": "fast"}, []string{"run", "--image", "mini"}, exitUsage, "BOOTLAB_TIMEOUT_SCALE"},
		{"missing QEMU", map[string]string{"BOOTLAB_QEMU": "qemu-system-does-not-exist"}, []string{"run", "--kernel", text}, exitUsage, "apt-get install qemu-system-x86"},
		{"missing image tool", map[string]string{"BOOTLAB_QEMU": fakeQEMU, "PATH": noTools}, []string{"run", "--image", "mini"}, exitUsage, "missing host tools"},
		{"inspect: no ISO", nil, []string{"inspect", text}, exitUsage, "not an ISO9660 image"},
		{"run: no ISO", map[string]string{"BOOTLAB_QEMU": fakeQEMU}, []string{"run", "--iso", text}, exitUsage, "not an ISO9660 image"},
		{"run: empty ISO", map[string]string{"BOOTLAB_QEMU": fakeQEMU}, []string{"run", "--iso", empty}, exitUsage, "is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			notes := t.TempDir()
			t.Setenv("BOOTLAB_NOTES", notes)
			t.Setenv("BOOTLAB_CACHE", t.TempDir())
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var out, errb fakeguest.Buffer
			code := Main(c.args, &out, &errb)
			require.Equal(t, c.code, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
			require.Contains(t, errb.String(), c.says)
			if code == exitUsage {
				entries, err := os.ReadDir(notes)
				require.NoError(t, err)
				require.Empty(t, entries, "no run directory for an exit 2")
			}
		})
	}
}

// A run whose verdict is a failure exits 1: here a screen that never shows its text,
// on a recorded console (no VM), with the timeouts scaled down.
func TestFailedVerdictExits1(t *testing.T) {
	iso := withReplay(t, "nixos-25.05-autoinstall-full-boot.serial.log")
	var out, errb fakeguest.Buffer
	code := Main([]string{"run", "--iso", iso, "--accel", "tcg", "--notes", t.TempDir(), "--timeout-scale", "0.02",
		"--expect-screen", "text the guest never shows"}, &out, &errb)
	require.Equal(t, exitFail, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Contains(t, out.String(), "verdict: fail")
}
