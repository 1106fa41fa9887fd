package inject

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/planner"
)

// SysDisk is one /sys/block entry as the guest's own shell reads it, independently of
// pre-nixos: the facts its plan is checked against.
type SysDisk struct {
	Name       string
	Sectors    int64 // /sys/block/NAME/size, in 512-byte units whatever the block size
	Rotational bool
	Removable  bool
	ReadOnly   bool
}

// sysBlockCmd prints one line per block device: name, size, rotational, removable, ro.
// Plain busybox ash and cat, so it works in any baseline.
const sysBlockCmd = `for d in /sys/block/*; do echo "${d##*/} $(cat $d/size) $(cat $d/queue/rotational) $(cat $d/removable) $(cat $d/ro)"; done`

// ReadSysBlock reads /sys/block in the guest.
func ReadSysBlock(ctx context.Context, r Runner) ([]SysDisk, error) {
	res, err := r.Run(ctx, sysBlockCmd, shell.Timeout(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("reading /sys/block in the guest: %w", err)
	}
	return ParseSysBlock(res.Output)
}

// ParseSysBlock parses sysBlockCmd's output.
func ParseSysBlock(out []byte) ([]SysDisk, error) {
	var disks []SysDisk
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 5 {
			return nil, fmt.Errorf("unexpected /sys/block line %q (want NAME SIZE ROTATIONAL REMOVABLE RO)", line)
		}
		sectors, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || sectors < 0 {
			return nil, fmt.Errorf("unexpected size in /sys/block line %q", line)
		}
		flag := func(s string) (bool, error) {
			switch s {
			case "0":
				return false, nil
			case "1":
				return true, nil
			}
			return false, fmt.Errorf("unexpected flag %q in /sys/block line %q", s, line)
		}
		var d SysDisk
		d.Name, d.Sectors = f[0], sectors
		var errs [3]error
		d.Rotational, errs[0] = flag(f[2])
		d.Removable, errs[1] = flag(f[3])
		d.ReadOnly, errs[2] = flag(f[4])
		for _, e := range errs {
			if e != nil {
				return nil, e
			}
		}
		disks = append(disks, d)
	}
	return disks, nil
}

// Candidates are the disks a plan may use by the guest's facts: not an ignored kind
// (loop, ram, sr, ...), not removable, not read-only, and not one of bootDisks.
func Candidates(facts []SysDisk, bootDisks ...string) []SysDisk {
	var out []SysDisk
	for _, d := range facts {
		ignored := slices.ContainsFunc(inventory.IgnoredPrefixes, func(p string) bool { return strings.HasPrefix(d.Name, p) })
		if ignored || d.Removable || d.ReadOnly || slices.Contains(bootDisks, d.Name) {
			continue
		}
		out = append(out, d)
	}
	return out
}

// Check compares what the injected pre-nixos saw and planned with the guest's /sys:
// the inventory it logged must be exactly the candidate disks with their sizes and
// rotational flags, and its plan must be the plan those facts give (the same planner,
// default mode, the RAM it saw). A plan made from partial facts (a disk missed, a size
// or flag misread) fails here.
func Check(res *Result, facts []SysDisk) error {
	if res == nil || res.Plan == nil {
		return fmt.Errorf("no plan to check")
	}
	cands := Candidates(facts)
	if len(cands) == 0 {
		return fmt.Errorf("the guest's /sys/block has no disk a plan could use: %+v", facts)
	}
	var want []inventory.Disk
	var problems []string
	for _, c := range cands {
		want = append(want, inventory.Disk{Name: c.Name, Size: c.Sectors * 512, Rotational: c.Rotational})
		i := slices.IndexFunc(res.Inventory, func(d inventory.Disk) bool { return d.Name == c.Name })
		if i < 0 {
			problems = append(problems, fmt.Sprintf("%s (%d bytes, rotational %t in /sys) is missing from pre-nixos's inventory", c.Name, c.Sectors*512, c.Rotational))
			continue
		}
		got := res.Inventory[i]
		if got.Size != c.Sectors*512 {
			problems = append(problems, fmt.Sprintf("%s: pre-nixos saw %d bytes, /sys says %d sectors (%d bytes)", c.Name, got.Size, c.Sectors, c.Sectors*512))
		}
		if got.Rotational != c.Rotational {
			problems = append(problems, fmt.Sprintf("%s: pre-nixos saw rotational %t, /sys says %t", c.Name, got.Rotational, c.Rotational))
		}
	}
	for _, d := range res.Inventory {
		if !slices.ContainsFunc(cands, func(c SysDisk) bool { return c.Name == d.Name }) {
			problems = append(problems, fmt.Sprintf("pre-nixos's inventory has %s, which /sys does not offer as a disk", d.Name))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("pre-nixos's inventory does not match the guest's /sys:\n  %s", strings.Join(problems, "\n  "))
	}
	got, err := planner.Load(bytes.NewReader(res.Plan))
	if err != nil {
		return fmt.Errorf("reading the injected pre-nixos's plan: %w", err)
	}
	exp, _, err := planner.Compute(want, planner.Options{RAMGiB: res.RAMGiB})
	if err != nil {
		return fmt.Errorf("planning from the guest's /sys facts: %w", err)
	}
	gotJSON, err := got.JSON()
	if err != nil {
		return err
	}
	expJSON, err := exp.JSON()
	if err != nil {
		return err
	}
	if !bytes.Equal(gotJSON, expJSON) {
		return fmt.Errorf("pre-nixos's plan is not the plan of the guest's /sys facts\ngot:\n%s\nwant:\n%s", gotJSON, expJSON)
	}
	return nil
}

// PlanDisks lists the disks a plan partitions, in plan order.
func PlanDisks(plan []byte) ([]string, error) {
	p, err := planner.Load(bytes.NewReader(plan))
	if err != nil {
		return nil, fmt.Errorf("reading the plan: %w", err)
	}
	var out []string
	for _, dp := range p.Partitions {
		out = append(out, dp.Disk)
	}
	return out, nil
}
