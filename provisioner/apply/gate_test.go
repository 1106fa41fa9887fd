package apply

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/planner"
)

// eligibleDisks passed this (imagined) run's data check; sda is the boot
// medium, sdd is removable, md0 is an array.
var eligibleDisks = map[string]bool{"sdb": true, "sdc": true}

// gatedApply applies p through a gate armed with eligibleDisks and returns
// every mutating command that reached the machine.
func gatedApply(t testing.TB, p *planner.Plan, backend string) ([]execpolicy.Cmd, error) {
	rec := &fr.Recorder{Replies: map[string]fr.Call{
		"lsblk --json --paths --output-all": {Stdout: `{"blockdevices":[{"name":"/dev/sda","type":"disk","children":[{"name":"/dev/sda1","type":"part","pkname":"/dev/sda","mountpoints":["/iso"]}]},{"name":"/dev/sdb","type":"disk"},{"name":"/dev/sdc","type":"disk"},{"name":"/dev/sdd","type":"disk"}]}`},
		"disko --help":                      {Stdout: "--mode destroy,format,mount"},
	}}
	gate := execpolicy.NewGate(nil)
	gate.Allow([]string{"/dev/sdb", "/dev/sdc"})
	env := Env{
		Runner: execpolicy.Gated{Gate: gate, Inner: rec}, Exec: true, Gate: gate,
		Root: execpolicy.Root{Dir: t.TempDir()}, StateDir: "/run/pre-nixos",
		Exists: func(string) bool { return true }, Sleep: func(time.Duration) {},
		LookPath: func(string) (string, error) { return "", os.ErrNotExist },
		Getenv:   func(string) string { return "" },
	}
	_, err := Apply(context.Background(), env, p, backend)
	var muts []execpolicy.Cmd
	for _, c := range rec.Cmds {
		if !c.Probe {
			muts = append(muts, c)
		}
	}
	return muts, err
}

// onEligible is the oracle, independent of the gate: a device path is a
// whole eligible disk, one of its partitions, or a device the plan builds
// (array, LV) when every plan disk is eligible.
func onEligible(p *planner.Plan, dev string) bool {
	name := strings.TrimPrefix(dev, "/dev/")
	for d := range eligibleDisks {
		if name == d {
			return true
		}
		for n := 1; n <= 128; n++ {
			if name == inventory.PartitionName(d, n) {
				return true
			}
		}
	}
	for _, dp := range p.Partitions {
		if !eligibleDisks[dp.Disk] {
			return false
		}
	}
	for _, a := range p.Arrays {
		if name == a.Name {
			return true
		}
	}
	for _, lv := range p.LVs {
		if name == lv.VG+"/"+lv.Name {
			return true
		}
	}
	return false
}

func checkGate(t testing.TB, p *planner.Plan, muts []execpolicy.Cmd) {
	t.Helper()
	for _, dp := range p.Partitions {
		if !eligibleDisks[dp.Disk] && len(muts) > 0 {
			t.Fatalf("plan names ineligible %s, yet %d mutating command(s) ran, first %q", dp.Disk, len(muts), muts[0])
		}
	}
	for _, c := range muts {
		if c.Name == "sh" {
			t.Fatalf("a shell ran: %s", c)
		}
		for _, a := range c.Args {
			if i := strings.Index(a, "/dev/"); i >= 0 && !onEligible(p, a[i:]) {
				t.Fatalf("%s names %s, which is not on an eligible disk", c, a[i:])
			}
		}
	}
}

func planJSON(disks ...string) string {
	var ds []inventory.Disk
	for _, d := range disks {
		ds = append(ds, inventory.Disk{Name: d, Size: 100 * GiB, Rotational: true})
	}
	p, _, err := planner.Compute(ds, planner.Options{RAMGiB: 8})
	if err != nil {
		panic(err)
	}
	js, _ := p.JSON()
	return string(js)
}

// Issue 19: whatever plan is loaded, no mutating command names a disk that
// did not pass this run's data check.
func FuzzPlanFileGate(f *testing.F) {
	for _, ds := range [][]string{{"sdb"}, {"sdb", "sdc"}, {"sda"}, {"sdb", "sda"}, {"sdd"}, {"md0"}, {"sdb", "sdc", "sdd"}, {"nvme0n1"}} {
		f.Add(planJSON(ds...), false)
	}
	f.Add(planJSON("sdb", "sdc"), true)
	f.Add(`{"partitions":{"sdb":[{"name":"sdb1","type":"lvm"}]},"vgs":[{"name":"main","devices":["sdb1"]}],"lvs":[{"name":"var_tmp","vg":"main","size":"1G"}],"post_apply_commands":["chmod 1777 /mnt/var/tmp"]}`, false)
	f.Fuzz(func(t *testing.T, in string, disko bool) {
		p, err := planner.Load(strings.NewReader(in))
		if err != nil {
			return
		}
		backend := Native
		if disko {
			backend = Disko
		}
		muts, _ := gatedApply(t, p, backend)
		checkGate(t, p, muts)
	})
}

func TestGatedApplyAllowsEligiblePlan(t *testing.T) {
	p, err := planner.Load(strings.NewReader(planJSON("sdb", "sdc")))
	require.NoError(t, err)
	muts, err := gatedApply(t, p, Native)
	require.NoError(t, err)
	checkGate(t, p, muts)
	var lines []string
	for _, c := range muts {
		lines = append(lines, c.String())
	}
	assert.Contains(t, lines, "mdadm --create /dev/md0 --run --metadata=1.2 --level=1 --raid-devices=2 /dev/sdb2 /dev/sdc2")
	assert.Contains(t, lines, "mount -o relatime /dev/main/slash /mnt")
}

func TestGatedApplyRefusesIneligiblePlan(t *testing.T) {
	for _, ds := range [][]string{{"sda"}, {"sdb", "sdd"}, {"md0"}} {
		p, err := planner.Load(strings.NewReader(planJSON(ds...)))
		require.NoError(t, err)
		muts, err := gatedApply(t, p, Native)
		require.ErrorIs(t, err, execpolicy.ErrRefused, "%v", ds)
		assert.Empty(t, muts, "%v: nothing ran", ds)
	}
}
