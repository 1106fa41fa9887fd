package inventory

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeDisk(t *testing.T, root, name string, attrs map[string]string) {
	t.Helper()
	for rel, v := range attrs {
		p := filepath.Join(root, "block", name, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(v+"\n"), 0o644))
	}
}

func TestScan(t *testing.T) {
	root := t.TempDir()
	writeDisk(t, root, "sdb", map[string]string{"size": "2097152", "queue/rotational": "1", "device/model": " HDD ", "removable": "0"})
	writeDisk(t, root, "nvme0n1", map[string]string{"size": "1000", "queue/rotational": "0"})
	writeDisk(t, root, "sda", map[string]string{"size": "bogus"})
	for _, n := range []string{"loop0", "zram0", "ram0", "dm-0", "md127", "fd0", "sr0", "nbd3"} {
		writeDisk(t, root, n, map[string]string{"size": "100"})
	}
	writeDisk(t, root, "sdc", map[string]string{"size": "100", "removable": "1"})
	writeDisk(t, root, "sdd", map[string]string{"size": "100"})

	disks, excluded, err := Scan(root, "/dev/sdd")
	require.NoError(t, err)
	assert.Equal(t, []Disk{
		{Name: "nvme0n1", Size: 512000},
		{Name: "sda", Size: 0},
		{Name: "sdb", Size: 2097152 * 512, Rotational: true, Model: "HDD"},
	}, disks)
	reasons := map[string]string{}
	for _, e := range excluded {
		reasons[e.Name] = e.Reason
	}
	assert.Equal(t, "removable", reasons["sdc"])
	assert.Equal(t, "boot_disk", reasons["sdd"], "full-path boot disk must be excluded")
	assert.Equal(t, "ignored_prefix", reasons["nbd3"])
	assert.Equal(t, "ignored_prefix", reasons["zram0"])
	assert.Len(t, excluded, 10)
}

func TestScanUnreadable(t *testing.T) {
	_, _, err := Scan(filepath.Join(t.TempDir(), "nope"), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "reading disk inventory")
}

func TestPartitionName(t *testing.T) {
	for disk, want := range map[string]string{"sda": "sda2", "vda": "vda2", "nvme0n1": "nvme0n1p2", "mmcblk0": "mmcblk0p2", "md126": "md126p2", "xvdb": "xvdb2"} {
		assert.Equal(t, want, PartitionName(disk, 2))
	}
}

func TestMemGiB(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meminfo"), []byte("MemFree: 1 kB\nMemTotal:        4028880 kB\n"), 0o644))
	got, err := MemGiB(dir)
	require.NoError(t, err)
	assert.Equal(t, 4, got) // 3.84 GiB rounds up

	require.NoError(t, os.WriteFile(filepath.Join(dir, "meminfo"), []byte("MemTotal: lots kB\n"), 0o644))
	_, err = MemGiB(dir)
	assert.ErrorContains(t, err, "parsing MemTotal")
	_, err = MemGiB(t.TempDir())
	assert.ErrorContains(t, err, "reading RAM size")
}

// Issue 19 item 9: read-only disks and second paths to one disk (same serial,
// multipath) are never planned, each with a reason.
func TestScanReadOnlyAndDuplicateSerial(t *testing.T) {
	root := t.TempDir()
	writeDisk(t, root, "sda", map[string]string{"size": "8388608", "device/serial": "S1", "ro": "0"})
	writeDisk(t, root, "sdb", map[string]string{"size": "8388608", "device/serial": "S1"})
	writeDisk(t, root, "sdc", map[string]string{"size": "8388608", "device/serial": "S2", "ro": "1"})
	writeDisk(t, root, "sdd", map[string]string{"size": "8388608", "device/serial": "S3"})
	disks, excluded, err := Scan(root, "", "/dev/sdx")
	require.NoError(t, err)
	var names []string
	for _, d := range disks {
		names = append(names, d.Name)
	}
	assert.Equal(t, []string{"sda", "sdd"}, names)
	reasons := map[string]string{}
	for _, e := range excluded {
		reasons[e.Name] = e.Reason
	}
	assert.Equal(t, "read_only", reasons["sdc"])
	assert.Contains(t, reasons["sdb"], "duplicate_serial")
	assert.Contains(t, reasons["sdb"], "sda")
}

func TestScanSeveralBootDisks(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"sda", "sdb", "sdc"} {
		writeDisk(t, root, n, map[string]string{"size": "8388608"})
	}
	disks, _, err := Scan(root, "/dev/sda", "sdc")
	require.NoError(t, err)
	require.Len(t, disks, 1)
	assert.Equal(t, "sdb", disks[0].Name)
}

// Issue 24 item 2: a disk sharing the boot disk's serial or WWN is a second
// path to the boot medium, whatever the name order; WWNs dedupe like
// serials; a virtio serial (block/NAME/serial) counts.
func TestScanSecondPathToBootDisk(t *testing.T) {
	root := t.TempDir()
	writeDisk(t, root, "sdz", map[string]string{"size": "100", "device/serial": "BOOT"}) // the boot disk, named last
	writeDisk(t, root, "sda", map[string]string{"size": "100", "device/serial": "BOOT"})
	writeDisk(t, root, "nvme0n1", map[string]string{"size": "100", "wwid": "eui.1"})
	writeDisk(t, root, "sdb", map[string]string{"size": "100", "device/wwid": "eui.1"})
	writeDisk(t, root, "sdy", map[string]string{"size": "100", "device/wwid": "naa.2"})
	writeDisk(t, root, "vda", map[string]string{"size": "100", "serial": "V1"})
	writeDisk(t, root, "vdb", map[string]string{"size": "100", "serial": "V1"})
	disks, excluded, err := Scan(root, "/dev/sdz", "/dev/sdy")
	require.NoError(t, err)
	var names []string
	for _, d := range disks {
		names = append(names, d.Name)
	}
	assert.Equal(t, []string{"nvme0n1", "vda"}, names)
	reasons := map[string]string{}
	for _, e := range excluded {
		reasons[e.Name] = e.Reason
	}
	assert.Contains(t, reasons["sda"], `boot_disk_path: same serial "BOOT" as the boot disk sdz`)
	assert.Contains(t, reasons["sdb"], `duplicate_serial: same WWN "eui.1" as nvme0n1`)
	assert.Contains(t, reasons["vdb"], `duplicate_serial: same serial "V1" as vda`)
	assert.Equal(t, `serial="BOOT" wwn="" size=100`, Identity(root, "/dev/sda"))
}
