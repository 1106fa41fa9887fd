// Package planner computes the deterministic RAID/LVM storage plan from a disk
// inventory with the layout rules of the Python pre-nixos it replaces, and its
// bugs fixed (docs/provisioner.md lists them): every machine with a usable
// disk gets a `main` VG holding `slash` and an ESP.
package planner

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/bootlab/bootlab/provisioner/inventory"
)

// Sizes.
const (
	MiB         int64 = 1 << 20
	GiB         int64 = 1 << 30
	Extent            = 4 * MiB
	ESPSize           = GiB
	RootRequest       = 50 * GiB
	DataRequest       = 100 * GiB
	HomeCap           = 16 * GiB
	VarLogCap         = 4 * GiB
	// MinDiskSize keeps disks that cannot hold an ESP plus a useful root
	// out of the plan instead of producing a plan that cannot work.
	MinDiskSize = 2 * GiB
	// MaxDiskSize bounds sizes so capacity sums cannot overflow.
	MaxDiskSize = 1 << 56
)

// Mode is the SSD RAID policy.
type Mode string

// Modes.
const (
	Fast    Mode = "fast"
	Careful Mode = "careful"
)

// Options steer the planner.
type Options struct {
	Mode              Mode
	PreferRAID6OnFour bool
	RAMGiB            int
}

// ErrNoDisks is returned when no usable disk remains.
var ErrNoDisks = errors.New("no usable disks")

// Excluded is a disk the planner left out, with why.
type Excluded struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

type bucket struct {
	tier   string // "ssd" or "hdd"
	disks  []inventory.Disk
	level  string // "single" or a RAID level
	total  int64
	vgName string
	esp    bool
}

// Compute plans storage for disks (already filtered by inventory, in name
// order). Disks smaller than MinDiskSize are left out and reported.
func Compute(disks []inventory.Disk, opts Options) (*Plan, []Excluded, error) {
	if opts.Mode == "" {
		opts.Mode = Fast
	}
	if opts.Mode != Fast && opts.Mode != Careful {
		return nil, nil, fmt.Errorf("unknown planner mode %q (want fast or careful)", opts.Mode)
	}
	if opts.RAMGiB < 0 || opts.RAMGiB > 1<<20 {
		return nil, nil, fmt.Errorf("implausible RAM size %d GiB", opts.RAMGiB)
	}
	var ssd, hdd []inventory.Disk
	var excluded []Excluded
	seen := map[string]bool{}
	serialOf := map[string]string{}
	for _, d := range disks {
		switch {
		case seen[d.Name]:
			return nil, nil, fmt.Errorf("disk %s listed twice in the inventory", d.Name)
		case d.Serial != "" && serialOf[d.Serial] != "":
			// Two paths to one disk (multipath): a RAID1 of them would mirror
			// the disk onto itself.
			excluded = append(excluded, Excluded{d.Name, fmt.Sprintf("same serial %q as %s (multipath?)", d.Serial, serialOf[d.Serial])})
			continue
		case d.Size < MinDiskSize:
			excluded = append(excluded, Excluded{d.Name, fmt.Sprintf("too small (%s, need at least %s)", human(d.Size), human(MinDiskSize))})
			continue
		case d.Size > MaxDiskSize:
			excluded = append(excluded, Excluded{d.Name, fmt.Sprintf("implausible size %d bytes", d.Size)})
			continue
		}
		seen[d.Name] = true
		if d.Serial != "" {
			serialOf[d.Serial] = d.Name
		}
		if d.Rotational {
			hdd = append(hdd, d)
		} else {
			ssd = append(ssd, d)
		}
	}
	if len(ssd)+len(hdd) == 0 {
		if len(excluded) == 0 {
			return nil, nil, fmt.Errorf("%w: the inventory is empty", ErrNoDisks)
		}
		var why []string
		for _, e := range excluded {
			why = append(why, e.Name+": "+e.Reason)
		}
		return nil, excluded, fmt.Errorf("%w: %s", ErrNoDisks, strings.Join(why, "; "))
	}

	ssdB := makeBuckets(ssd, "ssd")
	hddB := makeBuckets(hdd, "hdd")
	for _, b := range ssdB {
		b.level = ssdLevel(len(b.disks), opts.Mode)
	}
	for _, b := range hddB {
		b.level = hddLevel(len(b.disks), opts.PreferRAID6OnFour)
	}
	for i, b := range ssdB {
		if i == 0 {
			b.vgName, b.esp = "main", true
		} else {
			b.vgName = fmt.Sprintf("main_%d", i)
		}
	}
	swapRequest := int64(opts.RAMGiB) * 2 * GiB
	special := len(ssdB) == 0 && len(hddB) == 1 && len(hddB[0].disks) <= 2
	if special {
		hddB[0].vgName, hddB[0].esp = "main", true
	} else if len(hddB) > 0 {
		mainIdx := -1
		if len(ssdB) == 0 {
			mainIdx = chooseMainHDD(hddB)
		}
		// The main bucket never competes for swap: the Python pre-nixos let it
		// win both roles and then had no `main` VG at all.
		swapIdx := -1
		for i, b := range hddB {
			if i == mainIdx {
				continue
			}
			n := len(b.disks)
			qualifies := (n == 2 && (len(ssdB) > 0 || len(hddB) > 1)) || (n == 1 && len(ssdB) > 0)
			if !qualifies || minSize(b.disks) < swapRequest {
				continue
			}
			if swapIdx < 0 || b.total < hddB[swapIdx].total {
				swapIdx = i
			}
		}
		large := 0
		for i, b := range hddB {
			switch {
			case i == swapIdx:
				b.vgName = "swap"
			case i == mainIdx:
				b.vgName, b.esp = "main", true
			default:
				if large == 0 {
					b.vgName = "large"
				} else {
					b.vgName = fmt.Sprintf("large_%d", large)
				}
				large++
			}
		}
	}

	p := &Plan{Arrays: []Array{}, VGs: []VG{}, LVs: []LV{}, Partitions: PartitionMap{}}
	vgs := map[string]*vgState{}
	md := 0
	for _, b := range append(append([]*bucket{}, ssdB...), hddB...) {
		dataType := PartLVM
		if b.level != "single" {
			dataType = PartLinuxRAID
		}
		var dataParts []string
		var caps []int64
		for _, d := range b.disks {
			var parts []Partition
			n := 1
			capacity := d.Size
			if b.esp {
				parts = append(parts, Partition{inventory.PartitionName(d.Name, n), PartEFI})
				n++
				capacity -= ESPSize
			}
			capacity = max(capacity, 0) / MiB * MiB
			data := inventory.PartitionName(d.Name, n)
			parts = append(parts, Partition{data, dataType})
			p.Partitions = append(p.Partitions, DiskPartitions{Disk: d.Name, Partitions: parts})
			dataParts = append(dataParts, data)
			caps = append(caps, capacity)
		}
		vg := &vgState{name: b.vgName}
		if b.level != "single" {
			for i := range caps {
				caps[i] = max(caps[i]-mdOverhead(caps[i]), 0) / MiB * MiB
			}
		}
		if b.level == "single" {
			vg.devices = dataParts
			vg.total = caps[0]
		} else {
			name := fmt.Sprintf("md%d", md)
			md++
			p.Arrays = append(p.Arrays, Array{Name: name, Level: b.level, Devices: dataParts, Type: b.tier})
			vg.devices = []string{name}
			vg.total = usable(b.level, caps)
		}
		vgs[vg.name] = vg
		p.VGs = append(p.VGs, VG{Name: vg.name, Devices: vg.devices})
	}

	alloc := func(name, vg string, request int64) int64 {
		st := vgs[vg]
		if st == nil {
			return 0
		}
		got := st.add(request)
		if got > 0 {
			p.LVs = append(p.LVs, LV{Name: name, VG: vg, Size: FormatSize(got)})
		}
		return got
	}
	addHome := func() {
		st := vgs["main"]
		if st == nil || hasLV(p, "home") {
			return
		}
		free := (st.total - st.used) / Extent * Extent
		home := min(HomeCap, free/4/(4*MiB)*(4*MiB))
		if home >= Extent {
			alloc("home", "main", home)
		}
	}
	if special {
		if alloc("slash", "main", RootRequest) > 0 {
			addHome()
		}
		alloc("swap", "main", swapRequest)
	} else {
		if alloc("slash", "main", RootRequest) > 0 {
			addHome()
		}
		swapVG := ""
		switch {
		case vgs["swap"] != nil:
			swapVG = "swap"
		case len(hddB) == 0:
			swapVG = "main"
		default:
			for _, vg := range p.VGs {
				if strings.HasPrefix(vg.Name, "large") {
					swapVG = vg.Name
					break
				}
			}
		}
		var swapGot int64
		if swapVG != "" {
			swapGot = alloc("swap", swapVG, swapRequest)
		}
		if swapVG == "swap" && swapGot > 0 {
			st := vgs["swap"]
			if st.freeAligned() > swapGot {
				alloc("var_tmp", "swap", swapGot)
				p.PostApplyCommands = append(p.PostApplyCommands, "chmod 1777 /mnt/var/tmp")
			}
			varLog := min(swapGot, VarLogCap)
			if st.freeAligned() > varLog {
				alloc("var_log", "swap", varLog)
			}
		}
		addHome()
		if vgs["large"] != nil {
			alloc("data", "large", DataRequest)
		}
	}
	if !hasLV(p, "slash") {
		return nil, excluded, fmt.Errorf("planning storage: VG main has no room for the root filesystem")
	}
	return p, excluded, nil
}

type vgState struct {
	name    string
	devices []string
	total   int64
	used    int64
}

func (v *vgState) freeAligned() int64 { return (v.total - v.used) / Extent * Extent }

// add allocates up to request bytes in whole extents. Taking the last free
// extents is avoided (2 kept back, or 1 of 2) because md and LVM metadata are
// not modelled and would otherwise make lvcreate fail.
func (v *vgState) add(request int64) int64 {
	if request <= 0 {
		return 0
	}
	freeExt := (v.total - v.used) / Extent
	if freeExt < 1 {
		return 0
	}
	reqExt := max((request+Extent-1)/Extent, 1)
	ext := min(reqExt, freeExt)
	if ext == freeExt {
		switch {
		case freeExt > 2:
			ext -= 2
		case freeExt == 2:
			ext--
		}
	}
	v.used += ext * Extent
	return ext * Extent
}

func hasLV(p *Plan, name string) bool {
	for _, lv := range p.LVs {
		if lv.Name == name {
			return true
		}
	}
	return false
}

// makeBuckets groups disks of one tier: a disk joins the first bucket whose
// first disk is within 1% of its size. Buckets are ordered by total size,
// largest first, ties keeping discovery order.
func makeBuckets(disks []inventory.Disk, tier string) []*bucket {
	var out []*bucket
	for _, d := range disks {
		var home *bucket
		for _, b := range out {
			ref := b.disks[0].Size
			if ref != 0 && math.Abs(float64(d.Size-ref))/float64(ref) <= 0.01 {
				home = b
				break
			}
		}
		if home == nil {
			home = &bucket{tier: tier}
			out = append(out, home)
		}
		home.disks = append(home.disks, d)
		home.total += d.Size
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].total > out[j].total })
	return out
}

func ssdLevel(n int, mode Mode) string {
	switch {
	case n <= 1:
		return "single"
	case mode == Fast:
		return "raid0"
	case n == 2:
		return "raid1"
	case n >= 4 && n%2 == 0:
		return "raid10"
	}
	return "raid1"
}

func hddLevel(n int, raid6OnFour bool) string {
	switch {
	case n <= 1:
		return "single"
	case n == 2:
		return "raid1"
	case n == 3:
		return "raid5"
	case n == 4 && !raid6OnFour:
		return "raid5"
	}
	return "raid6"
}

func chooseMainHDD(bs []*bucket) int {
	for i, b := range bs {
		if b.level == "raid1" {
			return i
		}
	}
	for i, b := range bs {
		if b.level != "single" {
			return i
		}
	}
	return 0
}

func minSize(ds []inventory.Disk) int64 {
	m := ds[0].Size
	for _, d := range ds[1:] {
		m = min(m, d.Size)
	}
	return m
}

// mdOverhead is the space an md member loses to metadata: mdadm's 1.2
// superblock data offset reserves about 1/1024 of the device for reshape
// headroom (4 MiB to 128 MiB), plus superblock, bitmap and chunk rounding.
// The Python pre-nixos ignored it, so a RAID-backed VG filled to the last extents
// made lvcreate fail on real disks.
func mdOverhead(size int64) int64 {
	h := 128 * MiB
	for h > 4*MiB && h*1024 > size {
		h /= 2
	}
	return h + 4*MiB
}

func usable(level string, caps []int64) int64 {
	var sum int64
	lo := caps[0]
	for _, c := range caps {
		sum += c
		lo = min(lo, c)
	}
	switch level {
	case "raid1":
		return lo
	case "raid5":
		return sum - lo
	case "raid6":
		return sum - 2*lo
	case "raid10":
		return sum / 2
	}
	return sum
}

func human(b int64) string {
	switch {
	case b >= GiB:
		return fmt.Sprintf("%.1f GiB", float64(b)/float64(GiB))
	case b >= MiB:
		return fmt.Sprintf("%d MiB", b/MiB)
	}
	return fmt.Sprintf("%d bytes", b)
}
