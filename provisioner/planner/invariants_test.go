package planner_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/disko"
	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/planner"
	"github.com/bootlab/bootlab/provisioner/planner/plantest"
)

func TestInvariantsRandomMachines(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 600; i++ {
		n := 1 + i%16
		disks := plantest.RandomMachine(r, n)
		opts := planner.Options{RAMGiB: r.IntN(129), PreferRAID6OnFour: r.IntN(2) == 0, Mode: []planner.Mode{planner.Fast, planner.Careful}[r.IntN(2)]}
		p, _, err := planner.Compute(disks, opts)
		if err != nil {
			t.Fatalf("machine %d %+v %+v: %v", i, disks, opts, err)
		}
		ok := t.Run(fmt.Sprint(i), func(t *testing.T) { plantest.CheckInvariants(t, disks, p) })
		if !ok {
			t.Fatalf("machine %d failed: %+v opts %+v", i, disks, opts)
		}
	}
}

func FuzzLoadPlan(f *testing.F) {
	p, _, _ := planner.Compute([]inventory.Disk{{Name: "nvme0n1", Size: 512 * planner.GiB}, {Name: "sda", Size: 4000 * planner.GiB, Rotational: true}, {Name: "sdb", Size: 4000 * planner.GiB, Rotational: true}}, planner.Options{RAMGiB: 16})
	js, _ := p.JSON()
	f.Add(string(js))
	f.Add(`{"arrays":[],"vgs":[],"lvs":[],"partitions":{}}`)
	f.Add(`{"partitions":{"sda":[{"name":"sda1","type":"efi"}]},"disko":{"x":1}}`)
	f.Fuzz(func(t *testing.T, in string) {
		p, err := planner.Load(strings.NewReader(in))
		if err != nil {
			return
		}
		// Anything Load accepts must render and re-load identically.
		if _, err := disko.Render(p); err != nil {
			t.Fatalf("accepted plan does not render: %v", err)
		}
		js, err := p.JSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := planner.Load(bytes.NewReader(js))
		if err != nil {
			t.Fatalf("re-load of %s failed: %v", js, err)
		}
		js2, _ := back.JSON()
		if string(js) != string(js2) {
			t.Fatalf("round trip changed plan:\n%s\n%s", js, js2)
		}
	})
}

func TestLoadRejects(t *testing.T) {
	cases := map[string]string{
		"not json":        `{`,
		"unknown field":   `{"arrays":[],"bogus":1}`,
		"trailing":        `{} {}`,
		"bad part name":   `{"partitions":{"sda":[{"name":"sdb1","type":"efi"}]}}`,
		"unused part":     `{"partitions":{"sda":[{"name":"sda1","type":"lvm"}]}}`,
		"unknown level":   `{"arrays":[{"name":"md0","level":"raid7","devices":["sda1","sdb1"],"type":"hdd"}]}`,
		"device twice":    `{"partitions":{"sda":[{"name":"sda1","type":"lvm"}]},"vgs":[{"name":"a","devices":["sda1"]},{"name":"b","devices":["sda1"]}]}`,
		"lv on no vg":     `{"lvs":[{"name":"x","vg":"nope","size":"1G"}]}`,
		"bad size":        `{"partitions":{"sda":[{"name":"sda1","type":"lvm"}]},"vgs":[{"name":"main","devices":["sda1"]}],"lvs":[{"name":"x","vg":"main","size":"1T"}]}`,
		"shell in name":   `{"partitions":{"sda":[{"name":"sda1","type":"lvm"}]},"vgs":[{"name":"$(reboot)","devices":["sda1"]}]}`,
		"too few members": `{"partitions":{"sda":[{"name":"sda1","type":"linux-raid"}]},"arrays":[{"name":"md0","level":"raid1","devices":["sda1"],"type":"hdd"}]}`,
		// Issue 19 item 9: post-apply commands ran through sh -c as root.
		"post-apply shell":      `{"partitions":{"sda":[{"name":"sda1","type":"lvm"}]},"vgs":[{"name":"main","devices":["sda1"]}],"lvs":[{"name":"var_tmp","vg":"main","size":"1G"}],"post_apply_commands":["wipefs -a /dev/sdz"]}`,
		"post-apply chained":    `{"partitions":{"sda":[{"name":"sda1","type":"lvm"}]},"vgs":[{"name":"main","devices":["sda1"]}],"lvs":[{"name":"var_tmp","vg":"main","size":"1G"}],"post_apply_commands":["chmod 1777 /mnt/var/tmp; reboot"]}`,
		"post-apply without lv": `{"partitions":{"sda":[{"name":"sda1","type":"lvm"}]},"vgs":[{"name":"main","devices":["sda1"]}],"lvs":[{"name":"slash","vg":"main","size":"1G"}],"post_apply_commands":["chmod 1777 /mnt/var/tmp"]}`,
	}
	for name, in := range cases {
		_, err := planner.Load(strings.NewReader(in))
		require.Error(t, err, name)
	}
}

func TestLoadAcceptsPlannerPostApply(t *testing.T) {
	in := `{"partitions":{"sda":[{"name":"sda1","type":"lvm"}]},"vgs":[{"name":"main","devices":["sda1"]}],"lvs":[{"name":"var_tmp","vg":"main","size":"1G"}],"post_apply_commands":["chmod 1777 /mnt/var/tmp"]}`
	p, err := planner.Load(strings.NewReader(in))
	require.NoError(t, err)
	argv, err := p.PostApplyArgv(p.PostApplyCommands[0])
	require.NoError(t, err)
	require.Equal(t, []string{"chmod", "1777", "/mnt/var/tmp"}, argv)
}
