// Package inventory lists the disks a plan may use, from sysfs only, and the
// machine's RAM from /proc/meminfo. Both roots are injectable so a plan can be
// computed for any described machine.
package inventory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Disk is one whole block device.
type Disk struct {
	Name       string `json:"name"`
	Size       int64  `json:"size"` // bytes
	Rotational bool   `json:"rotational"`
	Model      string `json:"model,omitempty"`
	Serial     string `json:"serial,omitempty"`
	WWN        string `json:"wwn,omitempty"`
}

// serialOf reads a disk's serial: device/serial (SCSI, SATA, NVMe) or
// serial (virtio).
func serialOf(dir string) string {
	if s := read(dir, "device/serial"); s != "" {
		return s
	}
	return read(dir, "serial")
}

// wwnOf reads a disk's world-wide name: wwid (NVMe) or device/wwid (SCSI).
func wwnOf(dir string) string {
	if s := read(dir, "wwid"); s != "" {
		return s
	}
	return read(dir, "device/wwid")
}

// Identity is what tells one disk from another under the same name:
// serial, WWN and size, as sysfs reports them now. A hot-swapped disk, or
// another disk behind a reused name, reads differently.
func Identity(sysfsRoot, name string) string {
	dir := filepath.Join(sysfsRoot, "block", strings.TrimPrefix(name, "/dev/"))
	return fmt.Sprintf("serial=%q wwn=%q size=%s", serialOf(dir), wwnOf(dir), read(dir, "size"))
}

// NVMe reports whether the disk is an NVMe namespace.
func (d Disk) NVMe() bool { return strings.HasPrefix(d.Name, "nvme") }

// PartitionName is the kernel's name for partition n of disk: a "p" separates
// the number when the disk name ends in a digit (nvme0n1p1, mmcblk0p1,
// loop0p1, md126p1), fixing the Python pre-nixos which special-cased only nvme.
func PartitionName(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// IgnoredPrefixes are device name prefixes that are never install targets;
// the same list is used by storage detection so inventory never offers a disk
// the detector would not look at (the Python pre-nixos kept zram/nbd here).
var IgnoredPrefixes = []string{"loop", "zram", "ram", "dm", "md", "fd", "sr", "nbd"}

// Excluded records why a device was left out.
type Excluded struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Scan lists disks under sysfsRoot/block, sorted by name for determinism.
// bootDisks (names like "sda" or paths like "/dev/sda"; empty ones are
// ignored) are excluded: the boot medium can span several disks. A missing or unreadable block directory is an error: planning for
// "no disks" because sysfs was unreadable would be a silent lie.
func Scan(sysfsRoot string, bootDisks ...string) ([]Disk, []Excluded, error) {
	blockDir := filepath.Join(sysfsRoot, "block")
	entries, err := os.ReadDir(blockDir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading disk inventory from %s: %w", blockDir, err)
	}
	boot := map[string]bool{}
	for _, b := range bootDisks {
		if b = strings.TrimPrefix(b, "/dev/"); b != "" {
			boot[b] = true
		}
	}
	var disks []Disk
	var excluded []Excluded
	// serialSeen (and wwnSeen) remember the first disk with each serial
	// (WWN): two nodes with one serial are usually two paths to one disk
	// (multipath), and planning them as a RAID1 pair would mirror a disk
	// onto itself.
	serialSeen := map[string]string{}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	// The boot disk's serial and WWN are recorded before it is excluded:
	// another node with either is a second path to the boot medium
	// (multipath, a second controller) and must never be eligible.
	bootSerial, bootWWN := map[string]string{}, map[string]string{}
	for _, name := range names {
		if boot[name] {
			dir := filepath.Join(blockDir, name)
			if s := serialOf(dir); s != "" {
				bootSerial[s] = name
			}
			if w := wwnOf(dir); w != "" {
				bootWWN[w] = name
			}
		}
	}
	wwnSeen := map[string]string{}
	for _, name := range names {
		if reason := ignoredReason(name); reason != "" {
			excluded = append(excluded, Excluded{name, reason})
			continue
		}
		dir := filepath.Join(blockDir, name)
		if read(dir, "removable") == "1" {
			excluded = append(excluded, Excluded{name, "removable"})
			continue
		}
		if boot[name] {
			excluded = append(excluded, Excluded{name, "boot_disk"})
			continue
		}
		// A read-only disk cannot be partitioned; planning it only makes the
		// apply fail half-way.
		if read(dir, "ro") == "1" {
			excluded = append(excluded, Excluded{name, "read_only"})
			continue
		}
		serial, wwn := serialOf(dir), wwnOf(dir)
		if b, ok := bootSerial[serial]; ok && serial != "" {
			excluded = append(excluded, Excluded{name, fmt.Sprintf("boot_disk_path: same serial %q as the boot disk %s (a second path to the boot medium)", serial, b)})
			continue
		}
		if b, ok := bootWWN[wwn]; ok && wwn != "" {
			excluded = append(excluded, Excluded{name, fmt.Sprintf("boot_disk_path: same WWN %q as the boot disk %s (a second path to the boot medium)", wwn, b)})
			continue
		}
		if serial != "" {
			if first, dup := serialSeen[serial]; dup {
				excluded = append(excluded, Excluded{name, fmt.Sprintf("duplicate_serial: same serial %q as %s (multipath?)", serial, first)})
				continue
			}
			serialSeen[serial] = name
		}
		if wwn != "" {
			if first, dup := wwnSeen[wwn]; dup {
				excluded = append(excluded, Excluded{name, fmt.Sprintf("duplicate_serial: same WWN %q as %s (multipath?)", wwn, first)})
				continue
			}
			wwnSeen[wwn] = name
		}
		sectors, err := strconv.ParseInt(read(dir, "size"), 10, 64)
		if err != nil || sectors < 0 || sectors > math.MaxInt64/512 {
			sectors = 0
		}
		disks = append(disks, Disk{
			Name:       name,
			Size:       sectors * 512,
			Rotational: read(dir, "queue/rotational") == "1",
			Model:      read(dir, "device/model"),
			Serial:     serial,
			WWN:        wwn,
		})
	}
	return disks, excluded, nil
}

func ignoredReason(name string) string {
	for _, p := range IgnoredPrefixes {
		if strings.HasPrefix(name, p) {
			return "ignored_prefix"
		}
	}
	return ""
}

// read returns the trimmed content of dir/rel, "" when missing or unreadable:
// sysfs attributes vary between drivers and a missing model is not a failure.
func read(dir, rel string) string {
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// MemGiB reads MemTotal from procRoot/meminfo and rounds up to whole GiB.
func MemGiB(procRoot string) (int, error) {
	path := filepath.Join(procRoot, "meminfo")
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("reading RAM size: %w", err)
		}
		return 0, fmt.Errorf("reading RAM size from %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil || kb < 0 {
				return 0, fmt.Errorf("parsing MemTotal in %s: %q", path, fields[1])
			}
			return int((kb + 1048575) / 1048576), nil
		}
	}
	return 0, fmt.Errorf("no MemTotal line in %s", path)
}
