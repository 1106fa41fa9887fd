// Package plantest holds test helpers shared by planner and CLI tests:
// random machine generation and the invariants every plan must satisfy.
package plantest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/disko"
	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/planner"
)

// RandomMachine describes a machine with n disks of mixed kinds (SATA SSD,
// HDD, NVMe, virtio), sizes drawn so that equal and nearly-equal disks are
// common (buckets form) but odd sizes occur too.
func RandomMachine(r *rand.Rand, n int) []inventory.Disk {
	sizes := []int64{8, 15, 60, 120, 128, 240, 500, 512, 1000, 2000, 4000, 8000}
	var disks []inventory.Disk
	letters := 0
	nvme := 0
	for i := 0; i < n; i++ {
		size := sizes[r.IntN(len(sizes))] * planner.GiB
		if r.IntN(4) == 0 {
			size += int64(r.IntN(1000)) * planner.MiB // jitter, sometimes beyond 1%
		}
		var d inventory.Disk
		switch r.IntN(4) {
		case 0:
			d = inventory.Disk{Name: fmt.Sprintf("nvme%dn1", nvme), Size: size}
			nvme++
		case 1:
			d = inventory.Disk{Name: "vd" + string(rune('a'+letters)), Size: size, Rotational: r.IntN(2) == 0}
			letters++
		default:
			d = inventory.Disk{Name: "sd" + string(rune('a'+letters)), Size: size, Rotational: r.IntN(3) > 0}
			letters++
		}
		disks = append(disks, d)
	}
	return disks
}

var nameRe = regexp.MustCompile(`^[a-z0-9_]+$`)

// CheckInvariants verifies what must hold for every plan: no disk or device
// used twice, `main` VG with `slash` mounted at `/`, an ESP at `/boot` on a
// main disk, LVs fit their VGs, names sanitised, disko text parseable.
func CheckInvariants(t testing.TB, disks []inventory.Disk, p *planner.Plan) {
	t.Helper()
	require.NoError(t, p.Validate())
	size := map[string]int64{}
	for _, d := range disks {
		size[d.Name] = d.Size
	}
	seenDisk := map[string]bool{}
	partCap := map[string]int64{}
	partDisk := map[string]string{}
	for _, dp := range p.Partitions {
		require.False(t, seenDisk[dp.Disk], "disk %s used twice", dp.Disk)
		seenDisk[dp.Disk] = true
		s, ok := size[dp.Disk]
		require.True(t, ok, "plan uses unknown disk %s", dp.Disk)
		for _, part := range dp.Partitions {
			partDisk[part.Name] = dp.Disk
			if part.Type == planner.PartEFI {
				s -= planner.ESPSize
				continue
			}
			partCap[part.Name] = s / planner.MiB * planner.MiB
		}
	}
	devCap := map[string]int64{}
	for k, v := range partCap {
		devCap[k] = v
	}
	for _, a := range p.Arrays {
		var sum, lo int64 = 0, -1
		for _, d := range a.Devices {
			sum += partCap[d]
			if lo < 0 || partCap[d] < lo {
				lo = partCap[d]
			}
		}
		devCap[a.Name] = map[string]int64{"raid0": sum, "raid1": lo, "raid5": sum - lo, "raid6": sum - 2*lo, "raid10": sum / 2}[a.Level]
	}
	vgCap := map[string]int64{}
	vgDisks := map[string][]string{}
	arrayMembers := map[string][]string{}
	for _, a := range p.Arrays {
		arrayMembers[a.Name] = a.Devices
	}
	for _, vg := range p.VGs {
		require.Regexp(t, nameRe, vg.Name)
		for _, d := range vg.Devices {
			vgCap[vg.Name] += devCap[d]
			if m, ok := arrayMembers[d]; ok {
				for _, part := range m {
					vgDisks[vg.Name] = append(vgDisks[vg.Name], partDisk[part])
				}
			} else {
				vgDisks[vg.Name] = append(vgDisks[vg.Name], partDisk[d])
			}
		}
	}
	used := map[string]int64{}
	for _, lv := range p.LVs {
		require.Regexp(t, nameRe, lv.Name)
		n, err := planner.ParseSize(lv.Size)
		require.NoError(t, err)
		require.Zero(t, n%planner.Extent, "LV %s not extent aligned", lv.Name)
		used[lv.VG] += n
	}
	for vg, u := range used {
		require.LessOrEqual(t, u, vgCap[vg], "LVs overflow VG %s", vg)
	}
	require.Contains(t, vgCap, "main", "no main VG")
	var slashVG string
	for _, lv := range p.LVs {
		if lv.Name == "slash" {
			slashVG = lv.VG
		}
	}
	require.Equal(t, "main", slashVG)
	require.Equal(t, "/", planner.Mountpoint("slash"))

	devs, err := disko.Devices(p, false)
	require.NoError(t, err)
	var bootDisks []string
	for name, d := range devs["disk"].(map[string]any) {
		for _, part := range d.(map[string]any)["content"].(map[string]any)["partitions"].(map[string]any) {
			c := part.(map[string]any)["content"].(map[string]any)
			if c["mountpoint"] == "/boot" {
				bootDisks = append(bootDisks, name)
			}
		}
	}
	require.Len(t, bootDisks, 1, "exactly one ESP mounted at /boot")
	require.Contains(t, vgDisks["main"], bootDisks[0], "the /boot ESP must be on a main disk")

	nix, err := disko.Render(p)
	require.NoError(t, err)
	s := string(nix)
	var v any
	require.NoError(t, json.Unmarshal([]byte(s[strings.Index(s, "''\n")+3:strings.LastIndex(s, "\n  ''")]), &v))
	js, err := p.JSON()
	require.NoError(t, err)
	back, err := planner.Load(bytes.NewReader(js))
	require.NoError(t, err)
	js2, err := back.JSON()
	require.NoError(t, err)
	require.Equal(t, string(js), string(js2), "plan JSON must round-trip through Load")
}
