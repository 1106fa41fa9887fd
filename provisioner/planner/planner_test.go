package planner

import (
	"fmt"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/inventory"
)

func ssd(name string, gib int64) inventory.Disk { return inventory.Disk{Name: name, Size: gib * GiB} }
func hdd(name string, gib int64) inventory.Disk {
	return inventory.Disk{Name: name, Size: gib * GiB, Rotational: true}
}

func plan(t *testing.T, ram int, disks ...inventory.Disk) *Plan {
	t.Helper()
	return planOpts(t, Options{RAMGiB: ram}, disks...)
}

func planOpts(t *testing.T, o Options, disks ...inventory.Disk) *Plan {
	t.Helper()
	p, _, err := Compute(disks, o)
	require.NoError(t, err)
	require.NoError(t, p.Validate())
	return p
}

func vgNames(p *Plan) []string {
	var out []string
	for _, vg := range p.VGs {
		out = append(out, vg.Name)
	}
	return out
}

func lvOn(p *Plan) map[string]string {
	out := map[string]string{}
	for _, lv := range p.LVs {
		out[lv.Name] = lv.VG
	}
	return out
}

func lvSize(t *testing.T, p *Plan, name string) int64 {
	t.Helper()
	for _, lv := range p.LVs {
		if lv.Name == name {
			n, err := ParseSize(lv.Size)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no LV %s in %+v", name, p.LVs)
	return 0
}

func partTypes(p *Plan, disk string) []string {
	for _, dp := range p.Partitions {
		if dp.Disk == disk {
			var out []string
			for _, part := range dp.Partitions {
				out = append(out, part.Type)
			}
			return out
		}
	}
	return nil
}

func levels(p *Plan) []string {
	var out []string
	for _, a := range p.Arrays {
		out = append(out, a.Level)
	}
	return out
}

// The Python pre-nixos's test_planner cases T1-T6: RAID level decisions.
func TestRAIDDecisions(t *testing.T) {
	cases := []struct {
		name  string
		opts  Options
		disks []inventory.Disk
		want  []string
	}{
		{"T1 single NVMe", Options{}, []inventory.Disk{ssd("nvme0n1", 1000)}, nil},
		{"T2 two SSDs fast", Options{Mode: Fast}, []inventory.Disk{ssd("sda", 1000), ssd("sdb", 1000)}, []string{"raid0"}},
		{"T2 two SSDs careful", Options{Mode: Careful}, []inventory.Disk{ssd("sda", 1000), ssd("sdb", 1000)}, []string{"raid1"}},
		{"careful four SSDs", Options{Mode: Careful}, []inventory.Disk{ssd("sda", 100), ssd("sdb", 100), ssd("sdc", 100), ssd("sdd", 100)}, []string{"raid10"}},
		{"careful three SSDs", Options{Mode: Careful}, []inventory.Disk{ssd("sda", 100), ssd("sdb", 100), ssd("sdc", 100)}, []string{"raid1"}},
		{"T3 SSD + 2 HDDs", Options{}, []inventory.Disk{ssd("sda", 500), hdd("sdb", 2000), hdd("sdc", 2000)}, []string{"raid1"}},
		{"T4 SSD + 4 HDDs", Options{}, []inventory.Disk{ssd("sda", 500), hdd("sdb", 2000), hdd("sdc", 2000), hdd("sdd", 2000), hdd("sde", 2000)}, []string{"raid5"}},
		{"T4 SSD + 4 HDDs raid6 flag", Options{PreferRAID6OnFour: true}, []inventory.Disk{ssd("sda", 500), hdd("sdb", 2000), hdd("sdc", 2000), hdd("sdd", 2000), hdd("sde", 2000)}, []string{"raid6"}},
		{"T5 5 large + 2 small HDDs", Options{}, []inventory.Disk{hdd("sda", 4000), hdd("sdb", 4000), hdd("sdc", 4000), hdd("sdd", 4000), hdd("sde", 4000), hdd("sdf", 1000), hdd("sdg", 1000)}, []string{"raid6", "raid1"}},
		{"T6 HDDs 1000/2000/3000", Options{}, []inventory.Disk{hdd("sda", 1000), hdd("sdb", 2000), hdd("sdc", 3000)}, nil},
		{"4 HDDs only raid6 flag", Options{PreferRAID6OnFour: true}, []inventory.Disk{hdd("sda", 100), hdd("sdb", 100), hdd("sdc", 100), hdd("sdd", 100)}, []string{"raid6"}},
		{"within 1% share a bucket", Options{}, []inventory.Disk{hdd("sda", 1000), hdd("sdb", 1009)}, []string{"raid1"}},
		{"beyond 1% split", Options{}, []inventory.Disk{hdd("sda", 1000), hdd("sdb", 1011)}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.RAMGiB = 4
			p := planOpts(t, tc.opts, tc.disks...)
			assert.Equal(t, tc.want, levels(p))
		})
	}
}

// The Python pre-nixos's test_plan_storage, one case per test there, with
// expectations changed only where we fix one of its bugs (docs/provisioner.md,
// "Decisions where we differ from the reference").
func TestPlanStorage(t *testing.T) {
	t.Run("basic SSD + 2 HDD", func(t *testing.T) {
		p := plan(t, 16, ssd("sda", 500), hdd("sdb", 2000), hdd("sdc", 2000))
		assert.Equal(t, []string{"raid1"}, levels(p))
		assert.Subset(t, vgNames(p), []string{"main", "swap"})
		assert.Subset(t, keys(lvOn(p)), []string{"slash", "swap", "home", "var_tmp", "var_log"})
		assert.Equal(t, "50G", p.LVs[0].Size)
		assert.LessOrEqual(t, lvSize(t, p, "home"), 16*GiB)
		assert.Equal(t, []string{"efi", "lvm"}, partTypes(p, "sda"))
		assert.Equal(t, []string{"linux-raid"}, partTypes(p, "sdb"))
		assert.Equal(t, []string{"linux-raid"}, partTypes(p, "sdc"))
	})
	t.Run("home is a quarter of the free space", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 60))
		// 59 GiB data partition, 50G slash, 9 GiB free -> quarter 2304M.
		assert.Equal(t, "2304M", p.LVs[1].Size)
		assert.Equal(t, "home", p.LVs[1].Name)
	})
	t.Run("60 GiB SSD 16 GiB RAM truncates swap", func(t *testing.T) {
		p := plan(t, 16, ssd("sda", 60))
		assert.Equal(t, []LV{{"slash", "main", "50G"}, {"home", "main", "2304M"}, {"swap", "main", "6904M"}}, p.LVs)
	})
	t.Run("4 GiB disk 2 GiB RAM", func(t *testing.T) {
		p := plan(t, 2, ssd("sda", 4))
		assert.Equal(t, []LV{{"slash", "main", "3064M"}, {"swap", "main", "4M"}}, p.LVs)
	})
	// Not in the Python pre-nixos: md's data offset (4 MiB for 7 GiB members, up to
	// 128 MiB) is kept free so lvcreate cannot run out of extents.
	t.Run("RAID capacity leaves room for md metadata", func(t *testing.T) {
		p := plan(t, 1, hdd("vda", 8), hdd("vdb", 8), hdd("vdc", 8))
		assert.Equal(t, []LV{{"slash", "main", "14312M"}}, p.LVs)
		assert.Equal(t, 132*MiB, mdOverhead(4000*GiB))
		assert.Equal(t, 8*MiB, mdOverhead(7*GiB))
	})
	t.Run("single NVMe", func(t *testing.T) {
		p := plan(t, 4, ssd("nvme0n1", 1000))
		assert.Empty(t, p.Arrays)
		assert.Equal(t, []VG{{"main", []string{"nvme0n1p2"}}}, p.VGs)
	})
	t.Run("SSD buckets 1000 1000 500", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 1000), ssd("sdb", 1000), ssd("sdc", 500))
		assert.Equal(t, []string{"main", "main_1"}, vgNames(p))
		for _, lv := range p.LVs {
			assert.Equal(t, "main", lv.VG)
		}
		assert.Equal(t, []string{"efi", "linux-raid"}, partTypes(p, "sda"))
		assert.Equal(t, []string{"efi", "linux-raid"}, partTypes(p, "sdb"))
		assert.Equal(t, []string{"lvm"}, partTypes(p, "sdc"))
	})
	t.Run("3 HDDs only", func(t *testing.T) {
		p := plan(t, 4, hdd("sda", 1000), hdd("sdb", 1000), hdd("sdc", 1000))
		assert.Equal(t, []string{"raid5"}, levels(p))
		assert.Equal(t, "main", lvOn(p)["slash"])
		for _, d := range []string{"sda", "sdb", "sdc"} {
			assert.Equal(t, []string{"efi", "linux-raid"}, partTypes(p, d))
		}
		assert.NotContains(t, lvOn(p), "swap", "Python pre-nixos behaviour kept: no swap VG candidate")
	})
	t.Run("2 HDDs only", func(t *testing.T) {
		p := plan(t, 4, hdd("sda", 1000), hdd("sdb", 1000))
		assert.Equal(t, []string{"main"}, vgNames(p))
		assert.Equal(t, "main", lvOn(p)["slash"])
		assert.Equal(t, "main", lvOn(p)["swap"])
		assert.Equal(t, []string{"raid1"}, levels(p))
	})
	t.Run("1 HDD only", func(t *testing.T) {
		p := plan(t, 4, hdd("sda", 1000))
		assert.Equal(t, []string{"main"}, vgNames(p))
		assert.Equal(t, "main", lvOn(p)["slash"])
		assert.Equal(t, "main", lvOn(p)["swap"])
		assert.Empty(t, p.Arrays)
		assert.Equal(t, []string{"efi", "lvm"}, partTypes(p, "sda"))
	})
	t.Run("SSD + single HDD", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 500), hdd("sdb", 1000))
		assert.Contains(t, p.VGs, VG{"swap", []string{"sdb1"}})
		assert.Equal(t, "swap", lvOn(p)["swap"])
		assert.Equal(t, []string{"lvm"}, partTypes(p, "sdb"))
		assert.Equal(t, []string{"efi", "lvm"}, partTypes(p, "sda"))
	})
	t.Run("swap VG extras", func(t *testing.T) {
		p := plan(t, 8, ssd("sda", 500), hdd("sdb", 1000), hdd("sdc", 1000))
		assert.Equal(t, lvSize(t, p, "swap"), lvSize(t, p, "var_tmp"))
		assert.Equal(t, min(4*GiB, lvSize(t, p, "swap")), lvSize(t, p, "var_log"))
		assert.Equal(t, []string{"chmod 1777 /mnt/var/tmp"}, p.PostApplyCommands)
	})
	t.Run("two SSDs only", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 500), ssd("sdb", 500))
		assert.Equal(t, []string{"main"}, vgNames(p))
		assert.Equal(t, "main", lvOn(p)["swap"])
	})
	t.Run("SSD + 3 equal HDDs", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 500), hdd("sdb", 1000), hdd("sdc", 1000), hdd("sdd", 1000))
		assert.NotContains(t, vgNames(p), "swap")
		assert.Contains(t, vgNames(p), "large")
		assert.Equal(t, "large", lvOn(p)["swap"])
		assert.NotContains(t, lvOn(p), "var_tmp")
		assert.NotContains(t, lvOn(p), "var_log")
		assert.Nil(t, p.PostApplyCommands)
		js, err := p.JSON()
		require.NoError(t, err)
		assert.NotContains(t, string(js), "post_apply_commands")
	})
	t.Run("SSD + 2000x2 + 1000 has one swap LV", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 500), hdd("sdb", 2000), hdd("sdc", 2000), hdd("sdd", 1000))
		n := 0
		for _, lv := range p.LVs {
			if lv.Name == "swap" {
				n++
			}
		}
		assert.Equal(t, 1, n)
	})
	t.Run("swap is twice RAM", func(t *testing.T) {
		p := plan(t, 5, ssd("sda", 500))
		assert.Equal(t, "10G", p.LVs[2].Size)
	})
	t.Run("RAM 0 means no swap", func(t *testing.T) {
		p := plan(t, 0, ssd("sda", 500))
		assert.NotContains(t, lvOn(p), "swap")
	})
	t.Run("SSD + HDD 2000 + HDD 1000", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 500), hdd("sdb", 2000), hdd("sdc", 1000))
		assert.ElementsMatch(t, []string{"main", "swap", "large"}, vgNames(p))
		assert.Equal(t, []string{"lvm"}, partTypes(p, "sdb"))
		assert.Equal(t, []string{"lvm"}, partTypes(p, "sdc"))
	})
	t.Run("swap pair is the smaller pair", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 500), hdd("sdb", 2000), hdd("sdc", 2000), hdd("sdd", 1000), hdd("sde", 1000))
		var swapDev string
		for _, vg := range p.VGs {
			if vg.Name == "swap" {
				swapDev = vg.Devices[0]
			}
		}
		for _, a := range p.Arrays {
			if a.Name == swapDev {
				assert.Equal(t, []string{"sdd1", "sde1"}, a.Devices)
			}
		}
		assert.NotEmpty(t, swapDev)
	})
	t.Run("15 GiB SSD", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 15))
		s := lvSize(t, p, "slash")
		assert.LessOrEqual(t, s, 14*GiB)
		assert.GreaterOrEqual(t, s, 14*GiB-2*Extent)
	})
	t.Run("odd-sized NVMe with huge RAM", func(t *testing.T) {
		d := inventory.Disk{Name: "nvme0n1", Size: 500107862016}
		p := plan(t, 512, d)
		capacity := (d.Size - GiB) / MiB * MiB
		rest := capacity - lvSize(t, p, "slash") - lvSize(t, p, "home")
		assert.LessOrEqual(t, lvSize(t, p, "swap"), rest)
		assert.GreaterOrEqual(t, lvSize(t, p, "swap"), rest/Extent*Extent-2*Extent)
	})
	t.Run("data on the large VG", func(t *testing.T) {
		p := plan(t, 4, ssd("sda", 100), hdd("sdb", 60), hdd("sdc", 50))
		data := lvSize(t, p, "data")
		assert.LessOrEqual(t, data, 60*GiB)
		assert.GreaterOrEqual(t, data, 60*GiB-2*Extent)
		assert.Equal(t, "swap", lvOn(p)["swap"], "the 50G disk is the swap VG")
	})
}

// Python pre-nixos bug: HDD-only machines with several buckets had no `main`
// VG (its test_multiple_hdd_buckets_named_separately asserted VGs
// {swap, large} only). Fixed: the main bucket is chosen first and never also
// becomes swap.
func TestFixedBugHDDOnlyBucketsGetMain(t *testing.T) {
	cases := [][]inventory.Disk{
		{hdd("sda", 2000), hdd("sdb", 2000), hdd("sdc", 1000)},
		{hdd("sda", 4000), hdd("sdb", 1000), hdd("sdc", 1000)},
		{hdd("sda", 3000), hdd("sdb", 3000), hdd("sdc", 1000), hdd("sdd", 1000)},
	}
	for i, disks := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			p := plan(t, 4, disks...)
			assert.Contains(t, vgNames(p), "main")
			assert.Equal(t, "main", lvOn(p)["slash"])
			_, labels := p.ESPLabels()
			assert.NotEmpty(t, labels, "an ESP must exist")
		})
	}
	p := plan(t, 4, hdd("sda", 2000), hdd("sdb", 2000), hdd("sdc", 1000))
	assert.Equal(t, []string{"main", "large"}, vgNames(p))
	assert.Equal(t, []Array{{"md0", "raid1", []string{"sda2", "sdb2"}, "hdd"}}, p.Arrays)
	assert.Equal(t, map[string]string{"slash": "main", "home": "main", "swap": "large", "data": "large"}, lvOn(p))
}

// Python pre-nixos bug: only nvme got the "p" partition separator.
func TestFixedBugPartitionNaming(t *testing.T) {
	p := plan(t, 4, ssd("mmcblk0", 64))
	assert.Equal(t, []VG{{"main", []string{"mmcblk0p2"}}}, p.VGs)
}

func TestErrors(t *testing.T) {
	_, _, err := Compute(nil, Options{})
	assert.ErrorIs(t, err, ErrNoDisks)
	_, ex, err := Compute([]inventory.Disk{{Name: "vda", Size: MiB}}, Options{})
	assert.ErrorIs(t, err, ErrNoDisks)
	assert.ErrorContains(t, err, "vda: too small (1 MiB")
	assert.Len(t, ex, 1)
	_, _, err = Compute([]inventory.Disk{ssd("sda", 10)}, Options{Mode: "turbo"})
	assert.ErrorContains(t, err, "unknown planner mode")
	_, _, err = Compute([]inventory.Disk{ssd("sda", 10), ssd("sda", 10)}, Options{})
	assert.ErrorContains(t, err, "listed twice")
	// A tiny disk next to a real one is left out, not fatal.
	p, ex, err := Compute([]inventory.Disk{{Name: "vda", Size: MiB}, ssd("vdb", 20)}, Options{RAMGiB: 1})
	require.NoError(t, err)
	assert.Equal(t, "vdb", p.Partitions[0].Disk)
	assert.Equal(t, "vda", ex[0].Name)
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"50G": 50 * GiB, "2304M": 2304 * MiB, "4097": 4097} {
		got, err := ParseSize(in)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Equal(t, in, FormatSize(got))
	}
	for _, bad := range []string{"", "G", "1T", "-1G", "1.5G", "999999999999999G"} {
		_, err := ParseSize(bad)
		assert.Error(t, err, bad)
	}
}

func TestLabels(t *testing.T) {
	assert.Equal(t, "large_1", Label("large-1", 16))
	assert.Equal(t, "vol", Label("--", 16))
	assert.Equal(t, "abcdefghijklmnop", Label("abcdefghijklmnopq", 16))
	assert.Equal(t, "a_b", Label("_a..b_", 16))
	assert.Equal(t, "/data", Mountpoint("data"))
	assert.Equal(t, "/", Mountpoint("slash"))
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Issue 19 item 9: two nodes with one serial are one disk; the planner keeps
// the first and never mirrors a disk onto itself.
func TestComputeDedupesSerials(t *testing.T) {
	disks := []inventory.Disk{
		{Name: "sda", Size: 500 * GiB, Serial: "SSD0"},
		{Name: "sdb", Size: 1000 * GiB, Rotational: true, Serial: "MP1"},
		{Name: "sdc", Size: 1000 * GiB, Rotational: true, Serial: "MP1"},
	}
	p, ex, err := Compute(disks, Options{RAMGiB: 8})
	require.NoError(t, err)
	assert.Empty(t, p.Arrays, "no RAID1 of a disk with itself")
	require.Len(t, ex, 1)
	assert.Equal(t, "sdc", ex[0].Name)
	assert.Contains(t, ex[0].Reason, "same serial")
	for _, dp := range p.Partitions {
		assert.NotEqual(t, "sdc", dp.Disk)
	}
}
