package cleanup

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
)

const cleanDisk = `{"blockdevices":[{"name":"/dev/sda","type":"disk","fstype":null,"mountpoint":null,"mountpoints":[null],"pkname":null}]}`

// A raid1 over sda1+sdb1 holding VG main with LV slash mounted at /target
// and LV swap active, as lsblk --json --paths --output-all reports it.
const mdStack = `{"blockdevices":[
 {"name":"/dev/sda","type":"disk","fstype":null,"mountpoints":[null],"children":[
   {"name":"/dev/sda1","type":"part","fstype":"linux_raid_member","pkname":"/dev/sda","mountpoints":[null],"children":[
     {"name":"/dev/md0","type":"raid1","fstype":"LVM2_member","pkname":"/dev/sda1","mountpoints":[null],"children":[
       {"name":"/dev/mapper/main-slash","type":"lvm","fstype":"ext4","mountpoint":"/target","mountpoints":["/target"],"pkname":"/dev/md0"},
       {"name":"/dev/mapper/main-swap","type":"lvm","fstype":"swap","mountpoints":["[SWAP]"],"pkname":"/dev/md0"}]}]}]},
 {"name":"/dev/sdb","type":"disk","fstype":null,"mountpoints":[null],"children":[
   {"name":"/dev/sdb1","type":"part","fstype":"linux_raid_member","pkname":"/dev/sdb","mountpoints":[null],"children":[
     {"name":"/dev/md0","type":"raid1","fstype":"LVM2_member","pkname":"/dev/sdb1","mountpoints":[null],"children":[
       {"name":"/dev/mapper/main-slash","type":"lvm","fstype":"ext4","mountpoint":"/target","mountpoints":["/target"],"pkname":"/dev/md0"},
       {"name":"/dev/mapper/main-swap","type":"lvm","fstype":"swap","mountpoints":["[SWAP]"],"pkname":"/dev/md0"}]}]}]}]}`

const (
	vgsMain = `{"report":[{"vg":[{"vg_name":"main"}]}]}`
	pvsMain = `{"report":[{"pv":[{"pv_name":"/dev/md0","vg_name":"main"}]}]}`
	lvsMain = `{"report":[{"lv":[{"lv_path":"/dev/main/slash","vg_name":"main"},{"lv_path":"/dev/main/swap","vg_name":"main"}]}]}`
	noLoops = `{"loopdevices":[]}`
)

func probes(lsblk, vgs, pvs, lvs string) []fr.Call {
	return []fr.Call{
		{Cmd: "lsblk --json --paths --output-all", Stdout: lsblk},
		{Cmd: "vgs --reportformat json -o vg_name", Stdout: vgs},
		{Cmd: "pvs --reportformat json -o pv_name,vg_name", Stdout: pvs},
		{Cmd: "lvs --reportformat json -o lv_path,vg_name", Stdout: lvs},
		{Cmd: "losetup --list --json", Stdout: noLoops},
	}
}

func zap(dev string) []string {
	return []string{"sgdisk --zap-all " + dev, "blockdev --rereadpt " + dev, "partprobe " + dev, "udevadm settle", "wipefs -a " + dev}
}

func cfg(r execpolicy.Runner, action Action, exec bool, devs ...string) Config {
	return Config{Action: action, Devices: devs, Execute: exec, Runner: r, Sleep: func(time.Duration) {}}
}

func TestSingleCleanDisk(t *testing.T) {
	want := append([]string{"wipefs -a /dev/sda"}, zap("/dev/sda")...)
	calls := append(probes(cleanDisk, "", "", ""), fr.Ok(want...)...)
	// verification rebuilds the graph once and finds nothing
	calls = append(calls[:6], append(probes(cleanDisk, "", "", ""), calls[6:]...)...)
	r := fr.New(t, calls...)
	got, err := Run(context.Background(), cfg(r, WipeSignatures, true, "/dev/sda"))
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

var mdGolden = []string{
	"umount /target",
	"swapoff /dev/main/swap",
	"lvchange -an /dev/main/slash",
	"lvchange -an /dev/main/swap",
	"vgchange -an main",
	"mdadm --stop --force /dev/md0",
	"mdadm --zero-superblock --force /dev/sda1",
	"mdadm --zero-superblock --force /dev/sdb1",
	"wipefs -a /dev/main/slash",
	"lvremove -fy /dev/main/slash",
	"wipefs -a /dev/main/swap",
	"lvremove -fy /dev/main/swap",
	"vgremove -ff -y main",
	"pvremove -ff -y /dev/md0",
	"mdadm --zero-superblock --force /dev/md0",
	"wipefs -a /dev/md0",
	"mdadm --zero-superblock --force /dev/sda1",
	"wipefs -a /dev/sda1",
	"mdadm --zero-superblock --force /dev/sdb1",
	"wipefs -a /dev/sdb1",
	"wipefs -a /dev/sda",
	"wipefs -a /dev/sdb",
}

func TestMDStackGoldenSequence(t *testing.T) {
	calls := probes(mdStack, vgsMain, pvsMain, lvsMain)
	calls = append(calls, fr.Ok(mdGolden...)...)
	calls = append(calls, probes(`{"blockdevices":[{"name":"/dev/sda","type":"disk"},{"name":"/dev/sdb","type":"disk"}]}`, "", "", "")...)
	calls = append(calls, fr.Ok(zap("/dev/sda")...)...)
	calls = append(calls, fr.Ok(zap("/dev/sdb")...)...)
	r := fr.New(t, calls...)
	got, err := Run(context.Background(), cfg(r, WipeSignatures, true, "/dev/sda", "/dev/sdb"))
	require.NoError(t, err)
	assert.Equal(t, append(append(append([]string{}, mdGolden...), zap("/dev/sda")...), zap("/dev/sdb")...), got)
	// The lsblk and lvs names of one LV (/dev/mapper/VG-LV, /dev/VG/LV) are
	// folded into one node.
	assert.NotContains(t, strings.Join(got, "\n"), "/dev/mapper/main-slash")
}

// Dry run: only probes reach the machine, the full command list comes back,
// and there is no verification pass.
func TestDryRunSchedulesWithoutRunning(t *testing.T) {
	r := fr.New(t, probes(mdStack, vgsMain, pvsMain, lvsMain)...)
	got, err := Run(context.Background(), cfg(execpolicy.Policy{Exec: false, Inner: r}, WipeSignatures, false, "/dev/sda", "/dev/sdb"))
	require.NoError(t, err)
	assert.Equal(t, append(append(append([]string{}, mdGolden...), zap("/dev/sda")...), zap("/dev/sdb")...), got)
}

func TestLingeringMDFailsVerification(t *testing.T) {
	reassembled := `{"blockdevices":[{"name":"/dev/sda","type":"disk","children":[{"name":"/dev/md127","type":"raid1"}]}]}`
	calls := probes(mdStack, vgsMain, pvsMain, lvsMain)
	calls = append(calls, fr.Ok(mdGolden...)...)
	for i := 0; i < 3; i++ {
		calls = append(calls, probes(reassembled, "", "", "")...)
	}
	calls = append(calls, fr.Ok("mdadm --detail --scan", "dmsetup ls --tree")...)
	// second pass from a fresh graph
	calls = append(calls, probes(reassembled, "", "", "")...)
	calls = append(calls, fr.Ok("mdadm --stop --force /dev/md127", "mdadm --zero-superblock --force /dev/sda",
		"mdadm --zero-superblock --force /dev/md127", "wipefs -a /dev/md127", "wipefs -a /dev/sda")...)
	for i := 0; i < 3; i++ {
		calls = append(calls, probes(reassembled, "", "", "")...)
	}
	calls = append(calls, fr.Ok("mdadm --detail --scan", "dmsetup ls --tree")...)
	r := fr.New(t, calls...)
	_, err := Run(context.Background(), cfg(r, WipeSignatures, true, "/dev/sda", "/dev/sdb"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "lingering md/LVM devices remain: /dev/md127")
}

// udev re-assembled the array once; the second pass removes it for good.
func TestSecondPassAfterReassembly(t *testing.T) {
	reassembled := `{"blockdevices":[{"name":"/dev/sda","type":"disk","children":[{"name":"/dev/md127","type":"raid1"}]}]}`
	clean := `{"blockdevices":[{"name":"/dev/sda","type":"disk"}]}`
	calls := probes(reassembled, "", "", "")
	calls = append(calls, fr.Ok("mdadm --stop --force /dev/md127", "mdadm --zero-superblock --force /dev/sda",
		"mdadm --zero-superblock --force /dev/md127", "wipefs -a /dev/md127", "wipefs -a /dev/sda")...)
	for i := 0; i < 3; i++ {
		calls = append(calls, probes(reassembled, "", "", "")...)
	}
	calls = append(calls, fr.Ok("mdadm --detail --scan", "dmsetup ls --tree")...)
	calls = append(calls, probes(reassembled, "", "", "")...)
	calls = append(calls, fr.Ok("mdadm --stop --force /dev/md127", "mdadm --zero-superblock --force /dev/sda",
		"mdadm --zero-superblock --force /dev/md127", "wipefs -a /dev/md127", "wipefs -a /dev/sda")...)
	calls = append(calls, probes(clean, "", "", "")...)
	calls = append(calls, fr.Ok(zap("/dev/sda")...)...)
	_, err := Run(context.Background(), cfg(fr.New(t, calls...), WipeSignatures, true, "/dev/sda"))
	require.NoError(t, err)
}

func TestFailingUmountDoesNotStopWipes(t *testing.T) {
	lsblk := `{"blockdevices":[{"name":"/dev/sda","type":"disk","children":[{"name":"/dev/sda1","type":"part","fstype":"ext4","mountpoints":["/mnt"]}]}]}`
	calls := probes(lsblk, "", "", "")
	calls = append(calls, fr.Call{Cmd: "umount /mnt", Exit: 32, Stderr: "target is busy"})
	calls = append(calls, fr.Ok("mdadm --detail --scan", "dmsetup ls --tree", "wipefs -a /dev/sda1", "wipefs -a /dev/sda")...)
	calls = append(calls, fr.Ok(zap("/dev/sda")...)...)
	r := fr.New(t, calls...)
	got, err := Run(context.Background(), cfg(r, WipeSignatures, false, "/dev/sda"))
	require.NoError(t, err)
	assert.Equal(t, "wipefs -a /dev/sda", got[len(got)-1])
}

func TestActionsAndMissingDevices(t *testing.T) {
	t.Run("discard", func(t *testing.T) {
		calls := append(probes(cleanDisk, "", "", ""), fr.Ok("wipefs -a /dev/sda", "sgdisk --zap-all /dev/sda", "blockdev --rereadpt /dev/sda", "partprobe /dev/sda", "udevadm settle", "blkdiscard --force /dev/sda", "wipefs -a /dev/sda")...)
		_, err := Run(context.Background(), cfg(fr.New(t, calls...), Discard, false, "/dev/sda"))
		require.NoError(t, err)
	})
	t.Run("overwrite-random", func(t *testing.T) {
		calls := append(probes(cleanDisk, "", "", ""), fr.Ok("wipefs -a /dev/sda", "sgdisk --zap-all /dev/sda", "blockdev --rereadpt /dev/sda", "partprobe /dev/sda", "udevadm settle", "shred -n 1 -vz /dev/sda", "wipefs -a /dev/sda")...)
		_, err := Run(context.Background(), cfg(fr.New(t, calls...), OverwriteRandom, false, "/dev/sda"))
		require.NoError(t, err)
	})
	t.Run("skip runs nothing", func(t *testing.T) {
		got, err := Run(context.Background(), cfg(fr.New(t), Skip, true, "/dev/sda"))
		require.NoError(t, err)
		assert.Empty(t, got)
	})
	t.Run("unknown action", func(t *testing.T) {
		_, err := Run(context.Background(), cfg(fr.New(t), Action("q"), true, "/dev/sda"))
		assert.ErrorContains(t, err, `unknown cleanup action "q"`)
	})
	// Python pre-nixos bug: planned-but-absent partitions and md names were
	// zapped with sgdisk and made the cleanup fail.
	t.Run("absent planned devices only get a wipefs attempt", func(t *testing.T) {
		calls := append(probes(cleanDisk, "", "", ""), fr.Ok("wipefs -a /dev/sda")...)
		calls = append(calls, fr.Ok(zap("/dev/sda")...)...)
		_, err := Run(context.Background(), cfg(fr.New(t, calls...), WipeSignatures, false, "/dev/sda", "/dev/sda1", "/dev/md0"))
		require.NoError(t, err)
	})
	t.Run("sgdisk rc 2 tolerated, rc 3 fatal", func(t *testing.T) {
		calls := append(probes(cleanDisk, "", "", ""), fr.Call{Cmd: "wipefs -a /dev/sda"}, fr.Call{Cmd: "sgdisk --zap-all /dev/sda", Exit: 3})
		_, err := Run(context.Background(), cfg(fr.New(t, calls...), WipeSignatures, false, "/dev/sda"))
		assert.ErrorContains(t, err, "sgdisk --zap-all /dev/sda exited 3")
	})
	t.Run("refresh failure is reported", func(t *testing.T) {
		calls := append(probes(cleanDisk, "", "", ""), fr.Ok("wipefs -a /dev/sda", "sgdisk --zap-all /dev/sda")...)
		for i := 0; i < 3; i++ {
			calls = append(calls, fr.Call{Cmd: "blockdev --rereadpt /dev/sda", Exit: 1})
		}
		calls = append(calls, fr.Ok("mdadm --detail --scan", "dmsetup ls --tree")...)
		_, err := Run(context.Background(), cfg(fr.New(t, calls...), WipeSignatures, false, "/dev/sda"))
		assert.ErrorContains(t, err, "re-reading the partition table of /dev/sda")
	})
}

func TestMalformedProbeJSON(t *testing.T) {
	for name, calls := range map[string][]fr.Call{
		"lsblk":          {{Cmd: "lsblk --json --paths --output-all", Stdout: `{"blockdevices":[{"name":`}},
		"lsblk nameless": {{Cmd: "lsblk --json --paths --output-all", Stdout: `{"blockdevices":[{"type":"disk"}]}`}},
		"lvs":            append(probes(cleanDisk, "", "", "")[:3], fr.Call{Cmd: "lvs --reportformat json -o lv_path,vg_name", Stdout: "[not json"}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Run(context.Background(), cfg(fr.New(t, calls...), WipeSignatures, true, "/dev/sda"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "parsing")
		})
	}
}

func TestParseAction(t *testing.T) {
	for in, want := range map[string]Action{"": WipeSignatures, "1": WipeSignatures, "2": Discard, "3": OverwriteRandom, "S": Skip, " Wipe-Signatures ": WipeSignatures, "discard": Discard} {
		got, err := ParseAction(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
	// Python pre-nixos bug: "q" and unknown names crashed the CLI.
	for _, bad := range []string{"q", "nuke", "4"} {
		_, err := ParseAction(bad)
		assert.ErrorContains(t, err, "unknown cleanup action")
	}
}

type jsonRunner struct{ lsblk, lvm []byte }

func (j jsonRunner) Run(_ context.Context, c execpolicy.Cmd) (execpolicy.Result, error) {
	switch c.Name {
	case "lsblk":
		return execpolicy.Result{Stdout: j.lsblk}, nil
	case "vgs", "pvs", "lvs":
		return execpolicy.Result{Stdout: j.lvm}, nil
	}
	return execpolicy.Result{}, nil
}

// Malformed or hostile lsblk/LVM JSON (cycles, self-parents, deep nesting)
// must end in an error or a finite command list, never a panic or a hang.
func FuzzCleanupGraph(f *testing.F) {
	f.Add([]byte(mdStack), []byte(pvsMain))
	f.Add([]byte(`{"blockdevices":[{"name":"/dev/a","type":"disk","pkname":"/dev/b","children":[{"name":"/dev/b","pkname":"/dev/a"}]}]}`), []byte(lvsMain))
	f.Add([]byte(`{"blockdevices":[{"name":"/dev/sda","type":"disk","pkname":"/dev/sda"}]}`), []byte(`{"report":[{"vg":[{"vg_name":""}]}]}`))
	f.Fuzz(func(t *testing.T, lsblk, lvm []byte) {
		cmds, err := Run(context.Background(), Config{Action: WipeSignatures, Devices: []string{"/dev/sda", "/dev/a"}, Runner: jsonRunner{lsblk, lvm}, Sleep: func(time.Duration) {}})
		if err == nil && len(cmds) > 10000 {
			t.Fatalf("%d commands", len(cmds))
		}
	})
}

func TestLVPathEqualToMapperName(t *testing.T) {
	lsblk := `{"blockdevices":[{"name":"/dev/sda","type":"disk","children":[{"name":"/dev/mapper/v-l","type":"lvm"}]}]}`
	lvs := `{"report":[{"lv":[{"lv_path":"/dev/mapper/v-l","vg_name":"v"}]}]}`
	_, err := Run(context.Background(), Config{Action: WipeSignatures, Devices: []string{"/dev/sda"}, Runner: jsonRunner{[]byte(lsblk), []byte(lvs)}, Sleep: func(time.Duration) {}})
	require.NoError(t, err)
}

// Issue 19 item 4: cleaning /dev/sda must not stop, zero or remove an md
// array or VG that also lives on /dev/sdb; nothing at all runs.
func TestSpanningMDStackRefused(t *testing.T) {
	r := fr.New(t, probes(mdStack, vgsMain, pvsMain, lvsMain)...)
	got, err := Run(context.Background(), cfg(r, WipeSignatures, true, "/dev/sda"))
	require.ErrorIs(t, err, ErrSpansNonTarget)
	assert.Contains(t, err.Error(), "/dev/md0 also uses /dev/sdb1 (on /dev/sdb)")
	assert.Empty(t, got, "no command ran")
}

// A VG with one PV on the target and one on a removable disk outside it.
func TestSpanningLVMStackRefused(t *testing.T) {
	lsblk := `{"blockdevices":[
 {"name":"/dev/sdb","type":"disk","children":[{"name":"/dev/sdb1","type":"part","pkname":"/dev/sdb","fstype":"LVM2_member","children":[{"name":"/dev/mapper/data-big","type":"lvm","pkname":"/dev/sdb1"}]}]},
 {"name":"/dev/sdc","type":"disk","children":[{"name":"/dev/sdc1","type":"part","pkname":"/dev/sdc","fstype":"LVM2_member","children":[{"name":"/dev/mapper/data-big","type":"lvm","pkname":"/dev/sdc1"}]}]}]}`
	pvs := `{"report":[{"pv":[{"pv_name":"/dev/sdb1","vg_name":"data"},{"pv_name":"/dev/sdc1","vg_name":"data"}]}]}`
	lvs := `{"report":[{"lv":[{"lv_path":"/dev/data/big","vg_name":"data"}]}]}`
	r := fr.New(t, probes(lsblk, `{"report":[{"vg":[{"vg_name":"data"}]}]}`, pvs, lvs)...)
	got, err := Run(context.Background(), cfg(r, WipeSignatures, true, "/dev/sdb"))
	require.ErrorIs(t, err, ErrSpansNonTarget)
	assert.Contains(t, err.Error(), "/dev/sdc")
	assert.Empty(t, got)
}

// With both disks as targets the same stack is torn down (scenario 6 shape)
// and the gate, armed with both, lets every command through.
func TestGateAllowsStackWithinTargets(t *testing.T) {
	calls := probes(mdStack, vgsMain, pvsMain, lvsMain)
	calls = append(calls, fr.Ok(mdGolden...)...)
	calls = append(calls, probes(`{"blockdevices":[{"name":"/dev/sda","type":"disk"},{"name":"/dev/sdb","type":"disk"}]}`, "", "", "")...)
	calls = append(calls, fr.Ok(zap("/dev/sda")...)...)
	calls = append(calls, fr.Ok(zap("/dev/sdb")...)...)
	gate := execpolicy.NewGate(nil)
	gate.Allow([]string{"/dev/sda", "/dev/sdb"})
	r := fr.New(t, calls...)
	c := cfg(execpolicy.Gated{Gate: gate, Inner: r}, WipeSignatures, true, "/dev/sda", "/dev/sdb")
	c.Gate = gate
	_, err := Run(context.Background(), c)
	require.NoError(t, err)
}

// The gate refuses the whole pass before the first command when a target is
// not eligible (here sdb did not pass the data check).
func TestGateRefusesPassBeforeFirstCommand(t *testing.T) {
	gate := execpolicy.NewGate(nil)
	gate.Allow([]string{"/dev/sda"})
	r := fr.New(t, probes(mdStack, vgsMain, pvsMain, lvsMain)...)
	c := cfg(execpolicy.Gated{Gate: gate, Inner: r}, WipeSignatures, true, "/dev/sda", "/dev/sdb")
	c.Gate = gate
	got, err := Run(context.Background(), c)
	require.ErrorIs(t, err, execpolicy.ErrRefused)
	assert.Contains(t, err.Error(), "/dev/sdb, which did not pass this run's data check")
	assert.Empty(t, got)
}

// Issue 24 item 5: members of one multi-device filesystem linked by UUID.
// Both members inside the targets (two disks, or two partitions of one)
// are cleaned; a member outside refuses the cleanup before any command.
func TestMultiDeviceFilesystemByUUID(t *testing.T) {
	btrfs := func(part, disk string) string {
		return `{"name":"` + part + `","type":"part","pkname":"` + disk + `","fstype":"btrfs","uuid":"u-1"}`
	}
	lsblk := `{"blockdevices":[{"name":"/dev/sda","type":"disk","children":[` + btrfs("/dev/sda1", "/dev/sda") + `,` + btrfs("/dev/sda2", "/dev/sda") +
		`]},{"name":"/dev/sdb","type":"disk","children":[` + btrfs("/dev/sdb1", "/dev/sdb") + `]}]}`
	r := fr.New(t, probes(lsblk, "", "", "")...)
	got, err := Run(context.Background(), cfg(r, WipeSignatures, true, "/dev/sda"))
	require.ErrorIs(t, err, ErrSpansNonTarget)
	assert.Contains(t, err.Error(), "/dev/sda1, /dev/sda2 is a member of btrfs filesystem u-1, which also has /dev/sdb1 on /dev/sdb")
	assert.Empty(t, got, "no command ran")

	rec := &fr.Recorder{Replies: map[string]fr.Call{"lsblk --json --paths --output-all": {Stdout: lsblk}}}
	got, err = Run(context.Background(), cfg(rec, WipeSignatures, false, "/dev/sda", "/dev/sdb"))
	require.NoError(t, err)
	assert.Contains(t, got, "wipefs -a /dev/sdb1", "all members are targets: the filesystem is cleaned")
}
