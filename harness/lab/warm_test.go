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

// An image booted through its own bootloader (no command line to hold it on) and an
// image without pre-nixos boot cold, each with the reason. A seeded or existing disk
// does not: the saved guest had no disks, this run's are hot-plugged after the restore.
func TestWarmEligible(t *testing.T) {
	require.NoError(t, WarmEligible(warmConfig(t)))
	for name, change := range map[string]func(*Options){
		"not booted directly": func(c *Options) { c.VM.Image.Kernel = "" },
		"has no systemd":      func(c *Options) { c.VM.Image.Profile = shell.Mini },
		"already restores":    func(c *Options) { c.VM.RestoreFrom = "/tmp/x.state" },
	} {
		c := warmConfig(t)
		change(&c)
		err := WarmEligible(c)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), name)
	}
	c := warmConfig(t)
	c.VM.Disks = []vm.DiskSpec{{Name: "old.img", Path: "/tmp/old.img"},
		{Name: "data.img", SizeMB: 64, Seed: func(context.Context, string) error { return nil }}}
	require.NoError(t, WarmEligible(c), "disks holding data are hot-plugged after the restore, never seen by the saved guest")
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
	// Disks are not the state's: one state serves every device set.
	for _, disks := range [][]vm.DiskSpec{nil, {{Name: "disk0.img", SizeMB: 8192}},
		{{Name: "ssd.img", SizeMB: 4096, Bus: "scsi-hd", RotationRate: 1, Serial: "ssd0"}, {Name: "hdd.img", SizeMB: 3072, Bus: "scsi-hd"}}} {
		c := base
		c.VM.Disks = disks
		k, _, err := warmKey(ctx, c)
		require.NoError(t, err)
		require.Equal(t, k0, k, "disks %v", disks)
	}

	for name, change := range map[string]func(*Options){
		"append":     func(c *Options) { c.VM.Image.Append += " quiet" },
		"memory":     func(c *Options) { c.VM.MemoryMB = 2048 },
		"cpus":       func(c *Options) { c.VM.CPUs = 2 },
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

// A variant's file configures a unit when it is the unit file or one of its drop-ins:
// those are the files that need a reload and may not touch a unit already started.
func TestUnitOfVariantFile(t *testing.T) {
	for path, unit := range map[string]string{
		"/etc/systemd/system/pre-nixos.service.d/zz-break.conf": "pre-nixos.service",
		"/etc/systemd/system/pre-nixos.service":                 "pre-nixos.service",
		"/etc/systemd/system//ssh.service.d/../ssh.service.d/x": "ssh.service",
		"/etc/pre-nixos/root_key.pub":                           "",
		"/usr/lib/systemd/system/x.service":                     "",
	} {
		require.Equal(t, unit, unitOf(path), path)
	}
}
