package lab

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

func warmConfig(t *testing.T) Options {
	dir := t.TempDir()
	for _, n := range []string{"vmlinuz", "initrd.img", "fixture.iso"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644))
	}
	return Options{VM: vm.Spec{
		Image: vm.Image{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"), ISO: filepath.Join(dir, "fixture.iso"),
			Append: "boot=live console=ttyS0", Profile: shell.Fixture},
		Disks: []vm.DiskSpec{{Name: "disk0.img", SizeMB: 4096}}, Net: true, SSH: true, MemoryMB: 1024,
	}}
}

// Only a guest whose held state says nothing about this run's disks may start warm:
// a seeded or existing disk, an image booted through its own bootloader (no command
// line to hold it on) and an image without pre-nixos boot cold, each with the reason.
func TestWarmEligible(t *testing.T) {
	require.NoError(t, WarmEligible(warmConfig(t)))
	for name, change := range map[string]func(*Options){
		"not booted directly": func(c *Options) { c.VM.Image.Kernel = "" },
		"has no systemd":      func(c *Options) { c.VM.Image.Profile = shell.Mini },
		"not blank": func(c *Options) {
			c.VM.Disks = append(c.VM.Disks, vm.DiskSpec{Name: "data.img", Seed: func(context.Context, string) error { return nil }})
		},
		"already restores": func(c *Options) { c.VM.RestoreFrom = "/tmp/x.state" },
	} {
		c := warmConfig(t)
		change(&c)
		err := WarmEligible(c)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), name)
	}
	c := warmConfig(t)
	c.VM.Disks = []vm.DiskSpec{{Name: "old.img", Path: "/tmp/old.img"}}
	require.ErrorContains(t, WarmEligible(c), "not blank")
}

// A state is reused only by a VM it can load into and whose guest it describes: any
// change to the image files, the command line or the devices names another state;
// the run-to-run differences (ports, sockets, run directory) do not.
func TestWarmKeyFollowsWhatTheStateDependsOn(t *testing.T) {
	ctx := context.Background()
	base := warmConfig(t)
	k0, in, err := warmKey(ctx, base)
	require.NoError(t, err, "qemu-system-x86_64 must be installed (make deps)")
	require.Contains(t, in[0], "QEMU emulator version", "the key holds QEMU's version")
	again := base
	again.Slug, again.conf.Notes = "other", t.TempDir()
	k, _, err := warmKey(ctx, again)
	require.NoError(t, err)
	require.Equal(t, k0, k, "the same image and machine")

	for name, change := range map[string]func(*Options){
		"append":     func(c *Options) { c.VM.Image.Append += " quiet" },
		"memory":     func(c *Options) { c.VM.MemoryMB = 2048 },
		"cpus":       func(c *Options) { c.VM.CPUs = 2 },
		"disk size":  func(c *Options) { c.VM.Disks = []vm.DiskSpec{{Name: "disk0.img", SizeMB: 8192}} },
		"two disks":  func(c *Options) { c.VM.Disks = append(c.VM.Disks, vm.DiskSpec{Name: "disk1.img", SizeMB: 4096}) },
		"no nic":     func(c *Options) { c.VM.Net, c.VM.SSH = false, false },
		"accel":      func(c *Options) { c.VM.Accel = "tcg" },
		"cd on scsi": func(c *Options) { c.VM.Image.CDROMBus = "scsi" },
		"initrd rebuilt": func(c *Options) {
			future := time.Now().Add(time.Hour)
			require.NoError(t, os.Chtimes(c.VM.Image.Initrd, future, future))
		},
	} {
		c := warmConfig(t)
		// warmConfig makes new files each time: same names, other paths.
		c.VM.Image = base.VM.Image
		c.VM.Disks = append([]vm.DiskSpec(nil), base.VM.Disks...)
		change(&c)
		k, _, err := warmKey(ctx, c)
		require.NoError(t, err)
		require.NotEqual(t, k0, k, name)
	}
}

func TestWarmStateDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "warm-states")
	require.NoError(t, os.MkdirAll(dir, 0o755)) // as an older bootlab left it
	require.NoError(t, privateDir(dir))
	st, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "saved guest memory is readable by its owner only")
}
