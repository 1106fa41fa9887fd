package disko

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/planner"
)

var update = flag.Bool("update", false, "rewrite golden files")

const GiB = planner.GiB

func ssd(name string, gib int64) inventory.Disk { return inventory.Disk{Name: name, Size: gib * GiB} }
func hdd(name string, gib int64) inventory.Disk {
	return inventory.Disk{Name: name, Size: gib * GiB, Rotational: true}
}

func mustPlan(t *testing.T, ram int, disks ...inventory.Disk) *planner.Plan {
	t.Helper()
	p, _, err := planner.Compute(disks, planner.Options{RAMGiB: ram})
	require.NoError(t, err)
	return p
}

// Worked examples, machines that cover the planner's rules (single SSD, NVMe plus an HDD
// pair, SSD buckets, RAID6, two HDD buckets, HDDs only), as golden plan JSON
// and disko text.
func TestGoldenWorkedExamples(t *testing.T) {
	cases := []struct {
		name  string
		ram   int
		disks []inventory.Disk
	}{
		{"example1-sata-ssd-128g", 4, []inventory.Disk{ssd("sda", 128)}},
		{"example2-nvme-plus-hdd-pair", 16, []inventory.Disk{hdd("sda", 4000), hdd("sdb", 4000), ssd("nvme0n1", 512)}},
		{"two-ssd-plus-smaller-ssd", 8, []inventory.Disk{ssd("sda", 1000), ssd("sdb", 1000), ssd("sdc", 500)}},
		{"ssd-plus-six-hdd", 64, []inventory.Disk{ssd("sda", 500), hdd("sdb", 4000), hdd("sdc", 4000), hdd("sdd", 4000), hdd("sde", 4000), hdd("sdf", 4000), hdd("sdg", 4000)}},
		{"ssd-plus-two-hdd-pairs", 8, []inventory.Disk{ssd("sda", 500), hdd("sdb", 2000), hdd("sdc", 2000), hdd("sdd", 1000), hdd("sde", 1000)}},
		{"three-hdd-only", 8, []inventory.Disk{hdd("sda", 1000), hdd("sdb", 1000), hdd("sdc", 1000)}},
		{"hdd-2000-plus-hdd-1000", 8, []inventory.Disk{hdd("sda", 2000), hdd("sdb", 1000)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPlan(t, tc.ram, tc.disks...)
			js, err := p.JSON()
			require.NoError(t, err)
			nix, err := Render(p)
			require.NoError(t, err)
			golden(t, tc.name+".plan.json", js)
			golden(t, tc.name+".disko.nix", nix)
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "golden file missing; run go test ./provisioner/disko -update")
	assert.Equal(t, string(want), string(got), "golden %s differs", name)
}

// extract returns the JSON between the first "”\n" and the last "\n  ”",
// the way the Python pre-nixos's tests locate it.
func extract(t *testing.T, nix []byte) map[string]any {
	t.Helper()
	s := string(nix)
	start := strings.Index(s, "''\n")
	end := strings.LastIndex(s, "\n  ''")
	require.True(t, start >= 0 && end > start, "no JSON in %s", s)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(s[start+3:end]), &v))
	return v
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func TestRenderShape(t *testing.T) {
	p := mustPlan(t, 4, ssd("sda", 128))
	nix, err := Render(p)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(nix, []byte("{\n  disko.devices = builtins.fromJSON ''\n    {\n")))
	assert.True(t, bytes.HasSuffix(nix, []byte("\n    }\n  '';\n}\n")))
	for _, banned := range []string{`"label"`, "mountpointPermissions", `"devices"`} {
		assert.NotContains(t, string(nix), banned)
	}
	v := extract(t, nix)
	assert.Equal(t, map[string]any{}, v["mdadm"])
	esp := dig(v, "disk", "sda", "content", "partitions", "sda1")
	assert.Equal(t, "EF00", dig(esp, "type"))
	assert.Equal(t, "/boot", dig(esp, "content", "mountpoint"))
	assert.Equal(t, []any{"-n", "EFI"}, dig(esp, "content", "extraArgs"))
	assert.Equal(t, []any{"umask=0077"}, dig(esp, "content", "mountOptions"))
	assert.Equal(t, map[string]any{"type": "lvm_pv", "vg": "main"}, dig(v, "disk", "sda", "content", "partitions", "sda2", "content"))
	slash := dig(v, "lvm_vg", "main", "lvs", "slash", "content")
	assert.Equal(t, map[string]any{"type": "filesystem", "format": "ext4", "mountpoint": "/", "mountOptions": []any{"relatime"}, "extraArgs": []any{"-L", "slash"}}, slash)
	assert.Equal(t, map[string]any{"type": "swap", "extraArgs": []any{"--label", "swap"}}, dig(v, "lvm_vg", "main", "lvs", "swap", "content"))
}

// Ported from the Python pre-nixos's disko tests: HDD pair as swap VG, md
// without devices, plan keeps permissions that the rendered file drops.
func TestDevicesHDDPairAndPermissions(t *testing.T) {
	p := mustPlan(t, 4, ssd("sda", 500), hdd("sdb", 1000), hdd("sdc", 1000))
	devs, err := Devices(p, true)
	require.NoError(t, err)
	md := devs["mdadm"].(obj)["md0"].(obj)
	assert.Equal(t, 1, md["level"])
	assert.Equal(t, obj{"type": "lvm_pv", "vg": "swap"}, md["content"])
	assert.NotContains(t, md, "devices")
	assert.Equal(t, obj{"type": "mdraid", "name": "md0"}, dig(map[string]any(devs), "disk", "sdb", "content", "partitions", "sdb1", "content"))
	assert.Equal(t, 0, dig(map[string]any(devs), "disk", "sda", "content", "partitions", "sda1", "content", "mountpointPermissions"))
	for _, lv := range []string{"slash", "home"} {
		assert.Equal(t, 0, dig(map[string]any(devs), "lvm_vg", "main", "lvs", lv, "content", "mountpointPermissions"))
	}
	for lv, mp := range map[string]string{"var_tmp": "/var/tmp", "var_log": "/var/log"} {
		assert.Equal(t, mp, dig(map[string]any(devs), "lvm_vg", "swap", "lvs", lv, "content", "mountpoint"))
		assert.Equal(t, []any{"-L", lv}, dig(map[string]any(devs), "lvm_vg", "swap", "lvs", lv, "content", "extraArgs"))
	}
}

func TestSecondaryESPUnmounted(t *testing.T) {
	p := mustPlan(t, 4, ssd("sda", 500), ssd("sdb", 500))
	v := extract(t, must(Render(p)))
	assert.Equal(t, "/boot", dig(v, "disk", "sda", "content", "partitions", "sda1", "content", "mountpoint"))
	assert.Nil(t, dig(v, "disk", "sdb", "content", "partitions", "sdb1", "content", "mountpoint"))
	assert.Equal(t, []any{"-n", "EFI2"}, dig(v, "disk", "sdb", "content", "partitions", "sdb1", "content", "extraArgs"))
	assert.Equal(t, float64(0), dig(v, "mdadm", "md0", "level"))
}

// Python pre-nixos bug: VGs without LVs were not declared.
func TestFixedBugEmptyVGsDeclared(t *testing.T) {
	p := mustPlan(t, 4, ssd("sda", 1000), ssd("sdb", 1000), ssd("sdc", 500))
	v := extract(t, must(Render(p)))
	assert.Equal(t, map[string]any{"type": "lvm_vg", "lvs": map[string]any{}}, dig(v, "lvm_vg", "main_1"))
	assert.Equal(t, "main_1", dig(v, "disk", "sdc", "content", "partitions", "sdc1", "content", "vg"))
}

func TestDataLVAndLabelSanitising(t *testing.T) {
	p := mustPlan(t, 4, ssd("sda", 100), hdd("sdb", 60), hdd("sdc", 50))
	p.LVs = append(p.LVs, planner.LV{Name: "large-1", VG: "large", Size: "1G"})
	v := extract(t, must(Render(p)))
	assert.Equal(t, "/data", dig(v, "lvm_vg", "large", "lvs", "data", "content", "mountpoint"))
	assert.Equal(t, []any{"-L", "large_1"}, dig(v, "lvm_vg", "large", "lvs", "large-1", "content", "extraArgs"))
	assert.Equal(t, "/large-1", dig(v, "lvm_vg", "large", "lvs", "large-1", "content", "mountpoint"))
}

func TestNixEscaping(t *testing.T) {
	assert.Equal(t, `a'''b''${c}`, escapeNixIndented(`a''b${c}`))
	js, err := SortedJSON(map[string]any{"b": "é<>&", "a": []any{}})
	require.NoError(t, err)
	assert.Equal(t, "{\n  \"a\": [],\n  \"b\": \"\\u00e9<>&\"\n}", string(js))
}

func TestRenderRejectsInvalidPlan(t *testing.T) {
	_, err := Render(&planner.Plan{VGs: []planner.VG{{Name: "main", Devices: []string{"sdz9"}}}})
	assert.ErrorContains(t, err, "neither an array nor an lvm partition")
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// Python pre-nixos bug: an edited plan applied its stale `disko` key. The
// layout is now always derived from the plan's lists, and a loaded `disko`
// key is ignored.
func TestFixedBugEditedPlanRendersEdits(t *testing.T) {
	p := mustPlan(t, 4, ssd("sda", 128))
	devs, err := Devices(p, true)
	require.NoError(t, err)
	p.Disko = devs
	p.LVs[0].Size = "40G"
	js, err := p.JSON()
	require.NoError(t, err)
	loaded, err := planner.Load(bytes.NewReader(js))
	require.NoError(t, err)
	assert.Nil(t, loaded.Disko)
	v := extract(t, must(Render(loaded)))
	assert.Equal(t, "40G", dig(v, "lvm_vg", "main", "lvs", "slash", "size"))
}
