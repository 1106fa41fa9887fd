package detect

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
)

func put(t *testing.T, p, s string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
}

// fakeSys builds a sysfs tree: sda (partitions sda1, sda2), sdb (sdb1), sdc
// (sdc1); dm-0 "ventoy" on sda1; md0 on sdb1+sdc1; dm-1 "data-big" on md0;
// loop0 backed by an ISO file on the file system of sda2; loop1 backed by a
// file whose file system is unknown.
func fakeSys(t *testing.T) string {
	sys := t.TempDir()
	for _, d := range []string{"sda", "sdb", "sdc"} {
		put(t, filepath.Join(sys, "block", d, "size"), "8388608\n")
	}
	for _, p := range []string{"sda/sda1", "sda/sda2", "sdb/sdb1", "sdc/sdc1"} {
		put(t, filepath.Join(sys, "block", p, "partition"), "1\n")
	}
	put(t, filepath.Join(sys, "block/dm-0/dm/name"), "ventoy\n")
	put(t, filepath.Join(sys, "block/dm-0/slaves/sda1"), "")
	put(t, filepath.Join(sys, "block/md0/slaves/sdb1"), "")
	put(t, filepath.Join(sys, "block/md0/slaves/sdc1"), "")
	put(t, filepath.Join(sys, "block/dm-1/dm/name"), "data-big\n")
	put(t, filepath.Join(sys, "block/dm-1/slaves/md0"), "")
	put(t, filepath.Join(sys, "block/loop0/loop/backing_file"), "/run/initramfs/isoscan/nixos\\040x.iso\n")
	put(t, filepath.Join(sys, "block/loop0/size"), "100\n")
	put(t, filepath.Join(sys, "block/loop1/loop/backing_file"), "/nowhere/x.img (deleted)\n")
	return sys
}

func fakeStack(t *testing.T) Stack {
	mounts := "tmpfs / tmpfs rw 0 0\n/dev/sda2 /run/initramfs/isoscan vfat ro 0 0\n/dev/loop0 /iso iso9660 ro 0 0\n"
	return Stack{SysfsRoot: fakeSys(t), Mounts: func() ([]Mount, error) { return ParseMounts(strings.NewReader(mounts)) }}
}

// Issue 19 item 5: the boot medium and any device are traced through the
// whole stack to physical disks.
func TestStackDisks(t *testing.T) {
	s := fakeStack(t)
	for dev, want := range map[string][]string{
		"/dev/sda":             {"/dev/sda"},
		"/dev/sda1":            {"/dev/sda"},
		"/dev/dm-0":            {"/dev/sda"},
		"/dev/mapper/ventoy":   {"/dev/sda"},
		"/dev/md0":             {"/dev/sdb", "/dev/sdc"},
		"/dev/mapper/data-big": {"/dev/sdb", "/dev/sdc"},
		"/dev/loop0":           {"/dev/sda"}, // findiso=: ISO file on sda2
	} {
		got, ok := s.Disks(dev)
		assert.True(t, ok, dev)
		assert.Equal(t, want, got, dev)
	}
	for _, dev := range []string{"/dev/nope", "/dev/loop1", "/dev/mapper/nope", "relative", "/dev/../etc"} {
		_, ok := s.Disks(dev)
		assert.False(t, ok, "%s is unknown, not guessed", dev)
	}
}

func TestStackCycleEnds(t *testing.T) {
	sys := t.TempDir()
	put(t, filepath.Join(sys, "block/dm-0/slaves/dm-1"), "")
	put(t, filepath.Join(sys, "block/dm-1/slaves/dm-0"), "")
	got, ok := Stack{SysfsRoot: sys}.Disks("/dev/dm-0")
	assert.False(t, ok && len(got) > 0, "a cycle names no disk: %v", got)
}

// Ventoy: /iso is on /dev/mapper/ventoy (dm-0 on sda1). lsblk's PKNAME is
// the partition sda1, which the one-level lookup took for the disk, so sda
// (the real medium) was scanned as existing storage.
func TestBootMediumVentoyExcluded(t *testing.T) {
	d, _ := deps(t, "", []string{"/dev/mapper/ventoy"}, map[string]string{"/dev/mapper/ventoy": "/dev/dm-0"},
		fr.Call{Cmd: "findmnt -n -o SOURCE /iso", Stdout: "/dev/mapper/ventoy\n"},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/archiso/bootmnt", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /nix/.ro-store", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/live/medium", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /findiso", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/findiso", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/live/findiso", Exit: 1},
		fr.Call{Cmd: "findmnt -nr -t squashfs -o SOURCE", Exit: 1},
		fr.Call{Cmd: "findmnt -nr -t iso9660 -o SOURCE", Exit: 1},
		fr.Call{Cmd: "lsblk -npo PKNAME /dev/dm-0", Stdout: "/dev/sda1\n"},
		fr.Call{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sda disk 0\n/dev/sdb disk 0\n"},
		fr.Call{Cmd: "lsblk -rno TYPE /dev/sdb", Stdout: "disk\n"},
		fr.Call{Cmd: "wipefs -n /dev/sdb"},
	)
	d.Stack = fakeStack(t)
	res, err := Detect(context.Background(), d)
	require.NoError(t, err)
	assert.Equal(t, []string{"/dev/sda"}, res.BootDisks)
	assert.Equal(t, []string{"/dev/sdb"}, res.Candidates, "the medium is never a candidate")
	assert.Empty(t, res.Devices)
}

// findiso=: the ISO is a file on sda2, loop-mounted; the loop device has no
// lsblk parent, so the old lookup excluded only /dev/loop0.
func TestBootMediumLoopFileExcluded(t *testing.T) {
	d, _ := deps(t, "", []string{"/dev/loop0"}, nil,
		fr.Call{Cmd: "findmnt -n -o SOURCE /iso", Stdout: "/dev/loop0\n"},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/archiso/bootmnt", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /nix/.ro-store", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/live/medium", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /findiso", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/findiso", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/live/findiso", Exit: 1},
		fr.Call{Cmd: "findmnt -nr -t squashfs -o SOURCE", Exit: 1},
		fr.Call{Cmd: "findmnt -nr -t iso9660 -o SOURCE", Exit: 1},
		fr.Call{Cmd: "lsblk -npo PKNAME /dev/loop0", Stdout: "\n"},
		fr.Call{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sda disk 0\n"},
	)
	d.Stack = fakeStack(t)
	res, err := Detect(context.Background(), d)
	require.NoError(t, err)
	assert.Equal(t, []string{"/dev/sda"}, res.BootDisks)
	assert.Empty(t, res.Candidates)
}

func TestParseMountsUnescapes(t *testing.T) {
	ms, err := ParseMounts(strings.NewReader("/dev/sda2 /media/my\\040usb vfat ro 0 0\nbad\n/dev/sdb1 /x\\134y ext4 rw 0 0\n"))
	require.NoError(t, err)
	assert.Equal(t, []Mount{{"/dev/sda2", "/media/my usb"}, {"/dev/sdb1", `/x\y`}}, ms)
}
