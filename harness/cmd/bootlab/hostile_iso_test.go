package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/isoinspect/isotest"
)

// hostileISOs are images of a few KiB that lie in each place issue 24 names: sizes
// claimed past the end of the image, and loops, in the volume descriptors, the path
// table and the directory records.
func hostileISOs(t *testing.T) map[string]*isotest.Builder {
	withKey := func() (*isotest.Builder, uint32) {
		b := isotest.New("HOSTILE")
		sub := b.Alloc(1)
		b.Dir(sub, b.Root, b.File("ROOT_KEY.PUB;1", []byte("ssh-ed25519 AAAA x\n")))
		b.Dir(b.Root, b.Root, isotest.Record([]byte("PRE_NIXOS"), sub, isotest.Sector, true, nil))
		return b, sub
	}
	out := map[string]*isotest.Builder{}

	b, _ := withKey()
	copy(b.VD(0)[156:], isotest.Record([]byte{0}, b.Root, 0xF0000000, true, nil))
	out["volume descriptor: 3.75 GiB root directory"] = b

	b = isotest.NewWithVDs("HOSTILE", 41)
	b.Dir(b.Root, b.Root)
	for i := 1; i <= 41; i++ {
		copy(b.VD(i)[:190], b.VD(0)[:190]) // primaries, again and again, no terminator
	}
	out["volume descriptor: no terminator"] = b

	b, _ = withKey()
	binary.LittleEndian.PutUint32(b.VD(0)[132:], 0xF0000000)
	out["path table: 3.75 GiB"] = b

	b, sub := withKey()
	b.PathTable(isotest.PathRecord{Extent: b.Root, Parent: 1}, isotest.PathRecord{Extent: sub, Parent: 3, Name: "PRE_NIXOS"}, isotest.PathRecord{Extent: sub, Parent: 2, Name: "X"})
	out["path table: loop"] = b

	b = isotest.New("HOSTILE")
	sub = b.Alloc(1)
	b.Dir(sub, b.Root, isotest.Record([]byte("ROOT_KEY.PUB;1"), b.Root, 0xF0000000, false, nil))
	b.Dir(b.Root, b.Root, isotest.Record([]byte("PRE_NIXOS"), sub, isotest.Sector, true, nil))
	out["directory record: 3.75 GiB file"] = b

	b = isotest.New("HOSTILE")
	sub = b.Alloc(1)
	b.Dir(sub, b.Root, isotest.Record([]byte("UP"), b.Root, isotest.Sector, true, nil))
	b.Dir(b.Root, b.Root, isotest.Record([]byte("PRE_NIXOS"), sub, isotest.Sector, true, nil))
	out["directory record: loop"] = b
	return out
}

// memLimit is the address-space limit the binary runs under (ulimit -v, KiB): 4 GB,
// as in issue 24, where go-diskfs died with "fatal error: out of memory".
const memLimit = "4000000"

// runLimited runs bin with args under the address-space limit and returns its exit
// status, stdout, stderr and how long it took.
func runLimited(t *testing.T, env []string, bin string, args ...string) (int, string, string, time.Duration) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"-c", `ulimit -v ` + memLimit + ` && exec "$0" "$@"`, bin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "running %v: %v", args, err)
		code = ee.ExitCode()
	}
	return code, out.String(), errb.String(), took
}

// Issue 24's Done-when: each hostile ISO gets a one-line error in under 2 s from
// `bootlab inspect`, `bootlab run --iso` and `bootlab bisect`, under a 4 GB
// address-space limit, with a non-zero exit and no run directory left behind. No VM
// boots: every command ends before one could.
func TestHostileISOsEndWithOneLine(t *testing.T) {
	bin := buildBootlab(t)
	if o := os.Getenv("OLD_BIN"); o != "" {
		bin = o
	}
	root := t.TempDir()
	notes, cache := filepath.Join(root, "notes"), filepath.Join(root, "cache")
	require.NoError(t, os.MkdirAll(notes, 0o755))
	require.NoError(t, os.MkdirAll(cache, 0o755))
	// Nothing here may boot: a QEMU that only leaves a marker stands in for the real
	// one, so a regression fails the test instead of booting a VM.
	marker := filepath.Join(root, "qemu-was-started")
	fakeQEMU := filepath.Join(root, "qemu")
	require.NoError(t, os.WriteFile(fakeQEMU, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755))
	env := []string{"BOOTLAB_NOTES=" + notes, "BOOTLAB_CACHE=" + cache, "BOOTLAB_QEMU=" + fakeQEMU}

	good := isotest.New("GOOD")
	good.Dir(good.Root, good.Root, good.File("README.TXT;1", []byte("x")))
	goodISO := good.Write(t, "good.iso")
	// The limit leaves the binary room to work: an honest image is inspected.
	code, out, errs, _ := runLimited(t, env, bin, "inspect", goodISO)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errs)
	require.Contains(t, out, "label: GOOD")

	for name, b := range hostileISOs(t) {
		t.Run(name, func(t *testing.T) {
			iso := b.Write(t, "hostile.iso")
			bisectDir := filepath.Join(root, "bisect-"+strings.NewReplacer(" ", "-", ":", "", ".", "").Replace(name))
			for _, args := range [][]string{
				{"inspect", iso},
				{"inspect", "--menu", iso},
				{"run", "--iso", iso},
				{"run", "--iso", iso, "--boot", "direct"},
				{"run", "--iso", iso, "--boot", "firmware"},
				// The hostile candidate first: bisect reads every ISO candidate before
				// its directory exists.
				{"bisect", "-q", "--run", "true", "--dir", bisectDir, iso, "good iso=" + goodISO},
			} {
				code, out, errs, took := runLimited(t, env, bin, args...)
				t.Logf("bootlab %s: exit %d in %v: %s", args[0], code, took.Round(time.Millisecond), strings.TrimSpace(errs))
				assert.NotEqual(t, 0, code, "bootlab %v exited 0", args)
				assert.Empty(t, out, "bootlab %v printed a report", args)
				line := strings.TrimRight(errs, "\n")
				assert.NotContains(t, line, "\n", "bootlab %v: more than one line", args)
				assert.Contains(t, line, "malformed or hostile image", "bootlab %v", args)
				assert.NotContains(t, errs, "out of memory")
				assert.Less(t, took, 2*time.Second, "bootlab %v took %v", args, took)
				entries, err := os.ReadDir(notes)
				require.NoError(t, err)
				assert.Empty(t, entries, "bootlab %v left a run directory", args)
				assert.NoDirExists(t, bisectDir, "bootlab %v left a bisect directory", args)
				assert.NoDirExists(t, filepath.Join(cache, "direct"), "bootlab %v extracted a kernel", args)
				assert.NoFileExists(t, marker, "bootlab %v started QEMU", args)
			}
		})
	}
}

// `bootlab inspect` exits 1 when its report lists a problem (here a root key that does
// not parse), so a script can tell it from a clean report; the report is printed.
func TestInspectExitsNonZeroOnAProblem(t *testing.T) {
	b := isotest.New("PROBLEM")
	sub := b.Alloc(1)
	b.Dir(sub, b.Root, b.File("ROOT_KEY.PUB;1", []byte("not a key\n")))
	b.Dir(b.Root, b.Root, isotest.Record([]byte("PRE_NIXOS"), sub, isotest.Sector, true, nil))
	iso := b.Write(t, "problem.iso")
	for _, args := range [][]string{{"inspect", iso}, {"inspect", "--json", iso}} {
		var out, errb strings.Builder
		code := Main(args, &out, &errb)
		assert.Equal(t, exitFail, code, "bootlab %v; stderr: %s", args, errb.String())
		assert.Contains(t, out.String(), "pre_nixos/root_key.pub", "the report is printed")
		assert.Contains(t, errb.String(), "1 problem(s), the first: /pre_nixos/root_key.pub")
	}
}
