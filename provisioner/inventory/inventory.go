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
	// serialOf remembers the first disk with each serial: two nodes with one
	// serial are usually two paths to one disk (multipath), and planning them
	// as a RAID1 pair would mirror a disk onto itself.
	serialOf := map[string]string{}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
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
		serial := read(dir, "device/serial")
		if serial != "" {
			if first, dup := serialOf[serial]; dup {
				excluded = append(excluded, Excluded{name, fmt.Sprintf("duplicate_serial: same serial %q as %s (multipath?)", serial, first)})
				continue
			}
			serialOf[serial] = name
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
