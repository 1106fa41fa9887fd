package cli

// Issue 24: the remaining ways around the disk gate, each driven through
// pre-nixos's CLI with a scripted runner and fake sysfs/proc trees.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
	"github.com/bootlab/bootlab/provisioner/status"
)

// runLinked is runGate where the /dev paths in links exist (resolving to
// their value) besides /dev/sda1.
func runLinked(t *testing.T, r execpolicy.Runner, env map[string]string, sys string, links map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := PreNixos(context.Background(), args, Env{
		Stdout: &out, Stderr: &errb, Runner: r, Sleep: func(time.Duration) {},
		Getenv: func(k string) string { return env[k] },
		Exists: func(p string) bool { _, ok := links[p]; return ok || p == "/dev/sda1" },
		Realpath: func(p string) (string, error) {
			if l, ok := links[p]; ok {
				return l, nil
			}
			return p, nil
		},
		SysRoot: sys, ProcRoot: sys,
	})
	return result{code, out.String(), errb.String()}
}

func planFile(t *testing.T, text string) string {
	f := filepath.Join(t.TempDir(), "plan.json")
	put(t, f, text)
	return f
}

// bootProbes: the boot medium is sda (sda1 mounted at /iso), nothing else.
func bootProbes() []fr.Call {
	return gateDetect()[:10]
}

// detectSDB is detection after bootProbes: sdb examined with the given
// lsblk TYPE lines and wipefs output, sdc removable, md0 not a disk.
func detectSDB(types, sigs string) []fr.Call {
	return append(bootProbes(),
		fr.Call{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sda disk 0\n/dev/sdb disk 0\n/dev/sdc disk 1\n/dev/md0 raid1 0\n"},
		fr.Call{Cmd: "lsblk -rno TYPE /dev/sdb", Stdout: types},
		fr.Call{Cmd: "wipefs -n /dev/sdb", Stdout: sigs})
}

// graphProbes answers the cleanup's graph probes with lsblk JSON.
func graphProbes(lsblk string) []fr.Call {
	return []fr.Call{
		{Cmd: "lsblk --json --paths --output-all", Stdout: lsblk},
		{Cmd: "vgs --reportformat json -o vg_name", Exit: 5},
		{Cmd: "pvs --reportformat json -o pv_name,vg_name", Exit: 5},
		{Cmd: "lvs --reportformat json -o lv_path,vg_name", Exit: 5},
		{Cmd: "losetup --list --json"},
	}
}

var execForce = map[string]string{"PRE_NIXOS_EXEC": "1", "PRE_NIXOS_FORCE_CLEANUP": "1"}

// Item 2: a second path to the boot disk (same serial, or same WWN) is
// never eligible. Before the fix the boot disk was excluded before its
// serial was recorded, so sdb passed the duplicate check and a forced
// plan on it wiped the boot medium through the second path.
func TestSecondPathToBootDiskIsIneligible(t *testing.T) {
	for name, files := range map[string][2]string{
		"serial": {"block/sda/device/serial", "block/sdb/device/serial"},
		"wwn":    {"block/sda/device/wwid", "block/sdb/device/wwid"},
	} {
		t.Run(name, func(t *testing.T) {
			sys := gateMachine(t)
			put(t, filepath.Join(sys, files[0]), "BOOT-0001\n")
			put(t, filepath.Join(sys, files[1]), "BOOT-0001\n")
			r := fr.New(t, gateDetect()...) // nothing after detection
			res := runGate(t, r, execForce, sys, "--plan", planFile(t, planFor("sdb")), "--root", t.TempDir(), "--apply-backend", "native")
			assert.Equal(t, ExitFailure, res.code, res.stderr)
			assert.Contains(t, res.stderr, "/dev/sdb, which did not pass this run's data check")
			assert.Contains(t, res.stderr, "boot_disk_path")
		})
	}
}

// Item 3: every boot-medium source is asked. boot=LABEL=OLDISO names an old
// copy of the image on sdb, while sda1 is what is mounted at /iso. Before
// the fix the lookup stopped at the command line, and sda (the medium in
// use) was eligible and wiped under force.
func TestBootMediumIsTheUnionOfEverySource(t *testing.T) {
	sys := gateMachine(t)
	put(t, filepath.Join(sys, "cmdline"), "boot=LABEL=OLDISO quiet\n")
	r2 := []fr.Call{{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sda disk 0\n/dev/sdb disk 0\n/dev/sdc disk 1\n/dev/md0 raid1 0\n"}}
	r := fr.New(t, append(append([]fr.Call{{Cmd: "lsblk -npo PKNAME /dev/sdb1", Stdout: "/dev/sdb\n"}}, bootProbes()...), r2...)...)
	res := runLinked(t, r, execForce, sys, map[string]string{"/dev/disk/by-label/OLDISO": "/dev/sdb1"},
		"--plan", planFile(t, planFor("sda")), "--root", t.TempDir(), "--apply-backend", "native")
	assert.Equal(t, ExitFailure, res.code, res.stderr)
	assert.Contains(t, res.stderr, "/dev/sda, which did not pass this run's data check (eligible: none")
}

// Item 4: a disk examined blank that holds data by the time of the
// pre-apply cleanup is not torn down (before the fix, with no force:
// umount /media/photos, wipefs -a /dev/sdb1).
func TestDiskWithDataSinceDetectionIsNotTornDown(t *testing.T) {
	sys, root := gateMachine(t), t.TempDir()
	r := fr.New(t, append(detectSDB("disk\n", ""), graphProbes(`{"blockdevices":[{"name":"/dev/sdb","type":"disk","pttype":"gpt","children":[`+
		`{"name":"/dev/sdb1","type":"part","pkname":"/dev/sdb","fstype":"ext4","mountpoints":["/media/photos"]}]}]}`)...)...)
	res := runGate(t, r, map[string]string{"PRE_NIXOS_EXEC": "1"}, sys, "--plan", planFile(t, planFor("sdb")), "--root", root, "--apply-backend", "native")
	assert.Equal(t, ExitFailure, res.code, res.stderr)
	assert.Contains(t, res.stderr, "disk changed since storage detection examined it: /dev/sdb was examined blank and now holds a gpt partition table, /dev/sdb1, /dev/sdb1 mounted at /media/photos")
	assert.NotContains(t, strings.Join(r.Seen, "\n"), "umount")
	assert.Equal(t, status.StateFailed, readStorageStatus(t, root).State())
}

// hotSwap runs hook before the command line at swaps reaches inner.
type hotSwap struct {
	inner execpolicy.Runner
	at    string
	hook  func()
}

func (h hotSwap) Run(ctx context.Context, c execpolicy.Cmd) (execpolicy.Result, error) {
	if c.String() == h.at {
		h.hook()
	}
	return h.inner.Run(ctx, c)
}

// Item 4: another disk under the examined name (hot swap: serial and size
// differ) is refused even when it looks blank.
func TestHotSwappedDiskIsNotTornDown(t *testing.T) {
	sys := gateMachine(t)
	put(t, filepath.Join(sys, "block/sdb/device/serial"), "EXAMINED\n")
	inner := fr.New(t, append(detectSDB("disk\n", ""), graphProbes(`{"blockdevices":[{"name":"/dev/sdb","type":"disk"}]}`)...)...)
	r := hotSwap{inner: inner, at: "lsblk --json --paths --output-all", hook: func() {
		put(t, filepath.Join(sys, "block/sdb/device/serial"), "SWAPPED-IN\n")
		put(t, filepath.Join(sys, "block/sdb/size"), "536870912\n")
	}}
	res := runGate(t, r, map[string]string{"PRE_NIXOS_EXEC": "1"}, sys, "--plan", planFile(t, planFor("sdb")), "--root", t.TempDir(), "--apply-backend", "native")
	assert.Equal(t, ExitFailure, res.code, res.stderr)
	assert.Contains(t, res.stderr, `/dev/sdb was examined as serial="EXAMINED" wwn="" size=268435456 and now reads serial="SWAPPED-IN" wwn="" size=536870912`)
}

// Item 5: a multi-device filesystem (btrfs raid, a ZFS pool, an inactive md
// array) with a member on the target and one on another disk is linked by
// its UUID and the cleanup is refused before anything runs, on both
// backends: with disko, the pool never reaches disko's own destroy step
// (zpool destroy -f). Before the fix: wipefs -a /dev/sdb1, sgdisk
// --zap-all /dev/sdb, breaking the other disk's pool.
func TestMultiDeviceFilesystemSpanningANonTargetIsRefused(t *testing.T) {
	for _, tc := range []struct{ fstype, backend, what string }{
		{"btrfs", "native", "btrfs filesystem"},
		{"zfs_member", "disko", "ZFS pool"},
		{"linux_raid_member", "native", "md array"},
	} {
		t.Run(tc.fstype+"/"+tc.backend, func(t *testing.T) {
			sys := gateMachine(t)
			member := func(disk string) string {
				return `{"name":"/dev/` + disk + `","type":"disk","pttype":"gpt","children":[{"name":"/dev/` + disk + `1","type":"part","pkname":"/dev/` + disk +
					`","fstype":"` + tc.fstype + `","uuid":"5f8e6a52-0c1d-4e0a-9d1b-2b7c8e3f4a61"}]}`
			}
			r := fr.New(t, append(detectSDB("disk\npart\n", "sdb 0x200 gpt\n"), graphProbes(`{"blockdevices":[`+member("sdb")+`,`+member("sdc")+`]}`)...)...)
			res := runGate(t, r, execForce, sys, "--plan", planFile(t, planFor("sdb")), "--root", t.TempDir(), "--apply-backend", tc.backend)
			assert.Equal(t, ExitFailure, res.code, res.stderr)
			assert.Contains(t, res.stderr, "storage stack spans a device outside the cleanup targets")
			assert.Contains(t, res.stderr, "/dev/sdb1 is a member of "+tc.what+" 5f8e6a52-0c1d-4e0a-9d1b-2b7c8e3f4a61, which also has /dev/sdc1 on /dev/sdc")
		})
	}
}

// Item 6: a forced `--plan FILE` cleans the plan's disks only. sdd holds
// data too; it is neither a reason to refuse nor a cleanup target. Before
// the fix it was wiped with sdb.
func TestForcedPlanFileCleansOnlyItsDisks(t *testing.T) {
	sys := gateMachine(t)
	put(t, filepath.Join(sys, "block/sdd/size"), "268435456\n")
	disk := func(d string) string {
		return `{"name":"/dev/` + d + `","type":"disk","pttype":"gpt","children":[{"name":"/dev/` + d + `1","type":"part","pkname":"/dev/` + d + `","fstype":"ext4"}]}`
	}
	r := &fr.Recorder{Replies: map[string]fr.Call{
		"findmnt -n -o SOURCE /iso":         {Stdout: "/dev/sda1\n"},
		"lsblk -npo PKNAME /dev/sda1":       {Stdout: "/dev/sda\n"},
		"lsblk -dnpo NAME,TYPE,RM":          {Stdout: "/dev/sda disk 0\n/dev/sdb disk 0\n/dev/sdc disk 1\n/dev/sdd disk 0\n"},
		"lsblk -rno TYPE /dev/sdb":          {Stdout: "disk\npart\n"},
		"wipefs -n /dev/sdb":                {Stdout: "sdb 0x200 gpt\n"},
		"lsblk -rno TYPE /dev/sdd":          {Stdout: "disk\npart\n"},
		"wipefs -n /dev/sdd":                {Stdout: "sdd 0x200 gpt\n"},
		"lsblk --json --paths --output-all": {Stdout: `{"blockdevices":[` + disk("sdb") + `,` + disk("sdd") + `]}`},
	}}
	links := map[string]string{"/dev/sdb1": "/dev/sdb1", "/dev/sdb2": "/dev/sdb2"}
	res := runLinked(t, r, execForce, sys, links, "--plan", planFile(t, planFor("sdb")), "--root", t.TempDir(), "--apply-backend", "native")
	require.Equal(t, ExitOK, res.code, res.stderr)
	assert.Contains(t, res.stderr, "  - /dev/sdb (partitions, signatures)\napplying cleanup action \"wipe-signatures\" to /dev/sdb\n")
	assert.Contains(t, strings.Join(r.Seen, "\n"), "sgdisk --zap-all /dev/sdb")
	for _, c := range r.Seen {
		if c == "lsblk -rno TYPE /dev/sdd" || c == "wipefs -n /dev/sdd" {
			continue // detection's read-only probes
		}
		assert.NotContains(t, c, "sdd", "nothing but detection names sdd")
	}
}

// Item 7: the last pre-nixos-force-cleanup= on the kernel command line
// counts, and an explicit "no" in either source cancels the other's "yes".
// Before the fix "=1 ... =0" forced, and PRE_NIXOS_FORCE_CLEANUP=0 could
// not cancel a kernel =1.
func TestForcePrecedence(t *testing.T) {
	for _, tc := range []struct {
		cmdline, env string
		forced       bool
	}{
		{"pre-nixos-force-cleanup=1 quiet pre-nixos-force-cleanup=0", "", false},
		{"pre-nixos-force-cleanup=1", "0", false},
		{"pre-nixos-force-cleanup=0", "1", false},
		{"pre-nixos-force-cleanup=0 quiet pre-nixos-force-cleanup=1", "", true},
		{"quiet", "1", true},
	} {
		t.Run(tc.cmdline+" env="+tc.env, func(t *testing.T) {
			sys := gateMachine(t)
			put(t, filepath.Join(sys, "cmdline"), tc.cmdline+"\n")
			calls := detectSDB("disk\npart\n", "sdb 0x200 gpt\n")
			if tc.forced {
				// The forced cleanup starts (and stops at an unreadable graph).
				calls = append(calls, fr.Call{Cmd: "lsblk --json --paths --output-all", Exit: 1})
			}
			r := fr.New(t, calls...)
			res := runGate(t, r, map[string]string{"PRE_NIXOS_EXEC": "1", "PRE_NIXOS_FORCE_CLEANUP": tc.env}, sys,
				"--plan", planFile(t, planFor("sdb")), "--root", t.TempDir(), "--apply-backend", "native")
			if tc.forced {
				assert.Equal(t, ExitFailure, res.code, res.stderr)
				assert.Contains(t, res.stderr, "applying cleanup action")
			} else {
				assert.Equal(t, ExitRefusing, res.code, res.stderr)
				assert.Contains(t, res.stderr, "refusing to apply")
				assert.NotContains(t, res.stderr, "applying cleanup action")
			}
		})
	}
}

// The run-time Gated wrapper of cli.open: a storage command reaching the
// session's runner that no check vouched for never reaches the machine,
// and one on an eligible disk does.
func TestSessionRunnerIsGated(t *testing.T) {
	sys := gateMachine(t)
	r := fr.New(t, fr.Call{Cmd: "wipefs -a /dev/sdb"})
	env := Env{Runner: r, SysRoot: sys, ProcRoot: sys, Getenv: func(k string) string {
		return map[string]string{"PRE_NIXOS_EXEC": "1", "PRE_NIXOS_LOG_EVENTS": "0"}[k]
	}}
	env.defaults()
	s := open(env, options{root: t.TempDir(), sysfs: sys, proc: sys})
	defer s.closer.Close()
	s.gate.Allow([]string{"/dev/sdb"})
	_, err := s.runner.Run(context.Background(), execpolicy.C("wipefs", "-a", "/dev/sda"))
	require.ErrorIs(t, err, execpolicy.ErrRefused)
	_, err = s.runner.Run(context.Background(), execpolicy.C("wipefs", "-a", "/dev/sdb"))
	require.NoError(t, err)
	assert.Equal(t, []string{"wipefs -a /dev/sdb"}, r.Seen)
}

// mdMachine is gateMachine where md0 is an assembled array on sdc1 (the
// removable disk) and sdd is a second blank internal disk.
func mdMachine(t *testing.T) string {
	sys := gateMachine(t)
	put(t, filepath.Join(sys, "block/sdc/sdc1/partition"), "1\n")
	require.NoError(t, os.MkdirAll(filepath.Join(sys, "block/md0/slaves/sdc1"), 0o755))
	put(t, filepath.Join(sys, "block/sdd/size"), "268435456\n")
	return sys
}

// Apply's dry-pass CheckAll, with the gate's sysfs tracing: a plan whose
// array is named md0 while this machine's md0 already runs on sdc (sysfs
// slaves) passes the plan-disk check (sdb and sdd are eligible) but its
// `mdadm --create /dev/md0` lies on sdc. It is refused before the first
// command runs; without the dry pass the cleanup and sgdisk ran first.
func TestPlanArrayOnAnExistingArrayIsRefusedBeforeAnyCommand(t *testing.T) {
	sys := mdMachine(t)
	plan := `{"partitions":{"sdb":[{"name":"sdb1","type":"efi"},{"name":"sdb2","type":"linux-raid"}],"sdd":[{"name":"sdd1","type":"efi"},{"name":"sdd2","type":"linux-raid"}]},` +
		`"arrays":[{"name":"md0","level":"raid1","devices":["sdb2","sdd2"],"type":"ssd"}],` +
		`"vgs":[{"name":"main","devices":["md0"]}],"lvs":[{"name":"slash","vg":"main","size":"1G"}]}`
	r := fr.New(t, append(bootProbes(),
		fr.Call{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sda disk 0\n/dev/sdb disk 0\n/dev/sdc disk 1\n/dev/sdd disk 0\n/dev/md0 raid1 0\n"},
		fr.Call{Cmd: "lsblk -rno TYPE /dev/sdb", Stdout: "disk\n"}, fr.Call{Cmd: "wipefs -n /dev/sdb"},
		fr.Call{Cmd: "lsblk -rno TYPE /dev/sdd", Stdout: "disk\n"}, fr.Call{Cmd: "wipefs -n /dev/sdd"})...)
	res := runGate(t, r, map[string]string{"PRE_NIXOS_EXEC": "1"}, sys, "--plan", planFile(t, plan), "--root", t.TempDir(), "--apply-backend", "native")
	assert.Equal(t, ExitFailure, res.code, res.stderr)
	assert.Contains(t, res.stderr, "refusing to apply")
	assert.Contains(t, res.stderr, "/dev/md0 lies on /dev/sdc, which did not pass this run's data check")
}

// The gate's sysfs tracing in a manual cleanup: lsblk shows md0 only under
// sdb1 (its member on sdc missing, e.g. a udev race), sysfs says md0's
// slaves are sdb1 and sdc1. `mdadm --stop /dev/md0` is refused before
// anything runs.
func TestManualCleanupOfArraySpanningAnIneligibleDiskIsRefused(t *testing.T) {
	sys := mdMachine(t)
	require.NoError(t, os.MkdirAll(filepath.Join(sys, "block/md0/slaves/sdb1"), 0o755))
	put(t, filepath.Join(sys, "block/sdb/sdb1/partition"), "1\n")
	r := fr.New(t, append(detectSDB("disk\npart\nraid1\n", "sdb 0x200 gpt\n"), graphProbes(`{"blockdevices":[{"name":"/dev/sdb","type":"disk","children":[`+
		`{"name":"/dev/sdb1","type":"part","pkname":"/dev/sdb","children":[{"name":"/dev/md0","type":"raid1"}]}]}]}`)...)...)
	res := runGate(t, r, map[string]string{"PRE_NIXOS_EXEC": "1"}, sys, "cleanup", "--root", t.TempDir(), "/dev/sdb")
	assert.Equal(t, ExitFailure, res.code, res.stderr)
	assert.Contains(t, res.stderr, "mdadm --stop --force /dev/md0: /dev/md0 lies on /dev/sdc, which did not pass this run's data check")
}
