package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/fakeguest"
)

// TestUsageErrorsHaveNoSideEffects: every usage mistake exits 2 with a message naming
// it, and leaves nothing behind: the notes directory stays empty (no run directory), the
// image cache is untouched (no image build, no probe verdict), and QEMU is never started
// (BOOTLAB_QEMU points at a script that would leave a marker; the KVM probe runs it).
func TestUsageErrorsHaveNoSideEffects(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "a-file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	missing := filepath.Join(root, "missing.iso")

	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"run missing iso", []string{"run", "--iso", missing}, "--iso " + missing + ": no such file or directory"},
		{"run iso is a dir", []string{"run", "--iso", root}, "is a directory"},
		{"run missing kernel", []string{"run", "--kernel", missing}, "--kernel " + missing},
		{"run initrd without kernel", []string{"run", "--initrd", file}, "--initrd needs --kernel"},
		{"run missing initrd", []string{"run", "--kernel", file, "--initrd", missing}, "--initrd " + missing},
		{"run iso and kernel", []string{"run", "--iso", file, "--kernel", file}, "give one of --image, --iso or --kernel"},
		{"run image and iso", []string{"run", "--image", "mini", "--iso", file}, "give one of --image, --iso or --kernel"},
		{"run disk abc", []string{"run", "--image", "mini", "--disk", "abc"}, `--disk "abc": want a size in MiB`},
		{"run disk zero", []string{"run", "--image", "fixture", "--disk", "0"}, `--disk "0"`},
		{"run unknown image", []string{"run", "--image", "maxi"}, `unknown --image "maxi"`},
		{"run bad accel", []string{"run", "--image", "mini", "--accel", "hvf"}, `--accel must be kvm or tcg, not "hvf"`},
		{"run bad profile", []string{"run", "--image", "mini", "--profile", "nope"}, "nope"},
		{"run bad pause", []string{"run", "--image", "mini", "--pause-after", "lunch"}, `--pause-after must be login, network or storage, not "lunch"`},
		{"run pause at a stage mini never reaches", []string{"run", "--image", "mini", "--pause-after", "storage"}, "only images that run pre-nixos"},
		{"run negative memory", []string{"run", "--image", "mini", "--memory", "-5"}, "--memory must be positive"},
		{"run negative scale", []string{"run", "--image", "mini", "--timeout-scale", "-1"}, "--timeout-scale must be positive"},
		{"run zero debug wait", []string{"run", "--image", "mini", "--debug-wait", "0s"}, "--debug-wait must be positive"},
		{"run empty cmd", []string{"run", "--image", "mini", "--cmd", ""}, "--cmd: empty command"},
		{"run notes is a file", []string{"run", "--image", "mini", "--notes", file}, "--notes " + file + ": not a directory"},
		{"run slug with slash", []string{"run", "--image", "mini", "--slug", "a/b"}, "--slug"},
		{"run stray argument", []string{"run", "--image", "mini", "extra"}, "unexpected arguments: extra"},
		{"run unknown flag", []string{"run", "--imgae", "mini"}, "flag provided but not defined: -imgae"},
		{"demo disk abc", []string{"demo", "--disk", "abc"}, `--disk "abc"`},
		{"bench boot unknown variant", []string{"bench", "--boot", "--variants", "mini,maxi"}, `unknown boot variant "maxi"`},
		{"bench boot no variant", []string{"bench", "--boot", "--variants", " , "}, "--variants names no variant"},
		{"bench boot negative blame", []string{"bench", "--boot", "--blame", "-1"}, "--blame must not be negative"},
		{"bench restore and boot", []string{"bench", "--restore", "--boot"}, "--restore and --boot are separate measurements"},
		{"demo missing iso", []string{"demo", "--iso", missing}, "--iso " + missing},
		{"attach no dir", []string{"attach"}, "want the run directory"},
		{"attach missing dir", []string{"attach", missing}, "run directory " + missing + ": no such file"},
		{"attach not a paused run", []string{"attach", root}, "no console socket"},
		{"capture missing dir", []string{"capture", "--running", missing}, "run directory " + missing},
		{"capture not paused", []string{"capture", "--running", root}, "is not a paused run"},
		{"inspect missing", []string{"inspect", missing}, missing + ": no such file"},
		{"inspect initrd only", []string{"inspect", "--initrd", file}, "--initrd needs --kernel"},
		{"inspect missing initrd", []string{"inspect", "--kernel", file, "--initrd", missing}, "--initrd " + missing},
		{"inspect two images", []string{"inspect", file, file}, "want one ISO"},
		{"log bad file", []string{"log", "--file", "../../etc/passwd", root}, `--file "../../etc/passwd"`},
		{"log missing dir", []string{"log", missing}, "run directory " + missing},
		{"report two modes", []string{"report", "--trend", "--summary"}, "want one of"},
		{"report nothing", []string{"report"}, "want one of"},
		{"report -o without trend", []string{"report", "--summary", "-o", file}, "-o goes with --trend"},
		{"report missing dir", []string{"report", missing}, "run directory " + missing},
		{"report missing notes", []string{"report", "--summary", "--notes", missing}, "--notes " + missing},
		{"bisect bad accel", []string{"bisect", "--accel", "hvf"}, "--accel must be kvm or tcg"},
		{"bisect no predicate", []string{"bisect", file, file}, "bootlab bisect"},
		{"bench zero rounds", []string{"bench", "--rounds", "0"}, "--rounds must be positive"},
		{"bench stray argument", []string{"bench", "now"}, "unexpected arguments: now"},
		{"unknown command", []string{"boot"}, `unknown command "boot"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			side := t.TempDir()
			notes := filepath.Join(side, "notes")
			// The image cache is a file: an image build or a probe verdict would fail
			// at once (and change nothing) instead of taking minutes.
			cache := filepath.Join(side, "cache")
			require.NoError(t, os.Mkdir(notes, 0o755))
			require.NoError(t, os.WriteFile(cache, []byte("not a directory"), 0o644))
			marker := filepath.Join(side, "qemu-was-started")
			fakeQEMU := filepath.Join(side, "qemu")
			require.NoError(t, os.WriteFile(fakeQEMU, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755))
			t.Setenv("BOOTLAB_NOTES", notes)
			t.Setenv("BOOTLAB_CACHE", cache)
			t.Setenv("BOOTLAB_QEMU", fakeQEMU)
			t.Setenv("BOOTLAB_ACCEL", "")
			var stdout, stderr fakeguest.Buffer
			done := make(chan int, 1)
			go func() { done <- Main(c.args, &stdout, &stderr) }()
			var code int
			select {
			case code = <-done:
			case <-time.After(time.Minute):
				t.Fatalf("bootlab %v did not exit at once; stderr:\n%s", c.args, stderr.String())
			}
			require.Equal(t, exitUsage, code, "bootlab %v: stderr:\n%s", c.args, stderr.String())
			require.Contains(t, stderr.String(), c.msg, "the message names the mistake")
			ents, err := os.ReadDir(notes)
			require.NoError(t, err)
			require.Empty(t, ents, "a usage error leaves no run directory (nor a ledger)")
			b, err := os.ReadFile(cache)
			require.NoError(t, err, "the image cache was not replaced")
			require.Equal(t, "not a directory", string(b), "a usage error builds no image and writes no probe verdict")
			require.NoFileExists(t, marker, "a usage error starts no QEMU (no KVM probe)")
		})
	}
}
