package scenarios

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/labtest"
)

// Scenario 1: one blank 4 GiB virtio disk is provisioned automatically at boot.
func TestCleanDisk(t *testing.T) {
	m := standard(t)
	pre := m.WaitForPreNixos()
	require.Equal(t, labtest.Provisioned.State, pre.Storage["STATE"])
	require.Equal(t, labtest.Provisioned.Detail, pre.Storage["DETAIL"])
	p := m.Profile()
	state, _ := m.Execute("systemctl is-active " + p.PreNixosUnit)
	require.Equal(t, p.PreNixosDone, strings.TrimSpace(state),
		"the provisioner's oneshot ends %s after success (RemainAfterExit, docs/decisions.md)", p.PreNixosDone)
	require.Contains(t, m.Succeed("vgs --noheadings -o vg_name"), "main")
	require.Contains(t, m.Succeed("lvs --noheadings -o lv_name main"), "slash")
	// The plan's file systems exist with their labels and are mounted where it says.
	require.Equal(t, []string{"/dev/mapper/main-slash", "ext4"}, strings.Fields(m.Succeed("findmnt -n -o SOURCE,FSTYPE /mnt")))
	boot := strings.Fields(m.Succeed("findmnt -n -o FSTYPE,LABEL /mnt/boot"))
	require.Len(t, boot, 2)
	require.Equal(t, "vfat", boot[0])
	require.Regexp(t, `^EFI[0-9]*$`, boot[1])
	require.NotEmpty(t, strings.TrimSpace(m.Succeed("blkid -s LABEL -o value /dev/mapper/main-slash")), "the root file system has a label")
}

// Scenario 4: the key embedded in the ISO is the generated one, and metadata says so.
func TestEmbeddedKey(t *testing.T) {
	m := standard(t)
	key, generated := labtest.EmbeddedKey(t, m.ISOPath()), m.Key()
	require.Equal(t, generated.Fingerprint, key.Fingerprint, "the ISO carries the generated key")
	require.Equal(t, generated.AuthorizedKey, strings.Join(strings.Fields(key.Line)[:2], " "))
	require.Equal(t, generated.Fingerprint, m.Metadata().Image.RootKeyFingerprint, "metadata.json records the same fingerprint")
	// The private half never reaches a run directory or a log.
	require.NoError(t, filepath.Walk(m.Dir(), func(path string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() || info.Size() > 64<<20 {
			return err
		}
		b, rerr := os.ReadFile(path)
		if rerr == nil && strings.Contains(string(b), "PRIVATE KEY") {
			return fmt.Errorf("private key material in %s", path)
		}
		return nil
	}))
	st, err := os.Stat(generated.PrivatePath)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the generated private key is 0600")
	// Where the key sits on the ISO is the image's own layout (the profile says).
	p := m.Profile()
	require.Regexp(t, p.ISOKey, key.Layer+":"+key.Path, "the %s profile's place for the key on the ISO", p.Name)
	// And the guest has that key where the image keeps it, and for root, 0600.
	require.Contains(t, m.Succeed("cat "+p.GuestKey), strings.Fields(generated.AuthorizedKey)[1])
	require.Equal(t, "600\n", m.Succeed("stat -c %a "+p.AuthorizedKeys))
	require.Contains(t, m.Succeed("cat "+p.AuthorizedKeys), strings.Fields(generated.AuthorizedKey)[1])
}

// Scenario 5: a disk that already holds data is never touched without force.
func TestExistingStorage(t *testing.T) {
	labtest.HostTool(t, "mkfs.ext4", "e2fsprogs")
	labtest.HostTool(t, "debugfs", "e2fsprogs")
	marker := "bootlab marker " + time.Now().Format(time.RFC3339Nano)
	m := labtest.Boot(t, labtest.Standard(), labtest.Slug("existing-storage"), labtest.Network(),
		labtest.Disks(labtest.DiskSpec{Name: "disk0.img", SizeMB: 4096, Seed: labtest.SeedExt4("precious", "marker.txt", marker)}),
		labtest.Warm("the disk is hot-plugged after the restore: the saved guest never saw it, pre-nixos meets it as at boot"))
	m.WaitForStorage(labtest.PlanOnly)
	require.Contains(t, m.Succeed("blkid -s LABEL -o value /dev/vda"), "precious", "the file system is still there")
	m.Fail("vgs main") // no VG was created
	// Power off, then read the marker on the host from the disk image itself.
	m.Shutdown()
	require.Equal(t, marker, labtest.ReadExt4File(t, filepath.Join(m.Dir(), "disk0.img"), "marker.txt"), "the marker survived the boot")
}

// Scenario 6: RAID and LVM residue is torn down only with force, then the blank disks
// are provisioned. The residue is seeded in a first boot of a fixture whose pre-nixos
// does nothing (this host's kernel has neither md nor device-mapper).
func TestRAIDLVMResidueForce(t *testing.T) {
	seeder := labtest.Boot(t, labtest.BrokenPreNixos("/bin/true"), labtest.Slug("residue-seed"), labtest.Network(),
		labtest.Disks(labtest.Disk("disk0.img", 4096), labtest.Disk("disk1.img", 1536), labtest.Disk("disk2.img", 1536)),
		labtest.Warm("the seeder only writes residue by hand under a held-back pre-nixos"))
	seeder.Succeed("mdadm --create /dev/md127 --run --metadata=1.2 --level=1 --raid-devices=2 /dev/vdb /dev/vdc")
	seeder.Succeed("pvcreate -ff -y /dev/md127")
	seeder.Succeed("vgcreate vg_residue /dev/md127")
	seeder.Succeed("lvcreate -y -n lv_residue -L 100m vg_residue")
	seeder.Succeed("mkfs.ext4 -q -F /dev/vg_residue/lv_residue")
	seeder.Succeed("mkdir -p /tmp/r && mount /dev/vg_residue/lv_residue /tmp/r && echo residue-marker > /tmp/r/marker && umount /tmp/r")
	seeder.Succeed("vgchange -an vg_residue")
	seeder.Succeed("mdadm --stop /dev/md127")
	seeder.Succeed("sync")
	seeder.Shutdown()

	// Second boot on the same disk files: plan only, nothing destroyed. Warm: the disks
	// are hot-plugged after the restore and udev assembles what it finds on them, as at
	// boot, before pre-nixos starts.
	m := labtest.Boot(t, labtest.Standard(), labtest.Slug("residue-force"), labtest.Network(), seeder.Disks(),
		labtest.Warm("the residue disks are hot-plugged after the restore, before pre-nixos starts"))
	m.WaitForStorage(labtest.PlanOnly)
	require.Contains(t, m.Succeed("mdadm --examine /dev/vdb"), "Raid Level", "the residue is untouched without force")

	// With force: the residue goes and the disks are provisioned in the same run.
	m.Succeed("systemctl set-environment PRE_NIXOS_FORCE_CLEANUP=1 && rm -f /run/pre-nixos/storage-status && systemctl restart " + m.Profile().PreNixosUnit)
	m.WaitForStorage(labtest.ForceCleaned)
	mdstat, _ := m.Execute("cat /proc/mdstat")
	require.NotContains(t, mdstat, "md127")
	m.Fail("vgs vg_residue") // vg_residue is gone
	lvs := m.Succeed("lvs --noheadings -o lv_name")
	require.NotContains(t, lvs, "lv_residue")
	require.Contains(t, lvs, "slash")
	// No file system anywhere still holds the marker.
	found := m.Succeed(`for d in $(blkid -o device -t TYPE=ext4); do mkdir -p /tmp/chk; if mount -o ro "$d" /tmp/chk 2>/dev/null; then test -e /tmp/chk/marker && echo "$d"; umount /tmp/chk; fi; done; true`)
	require.Empty(t, strings.TrimSpace(found), "the residue marker is not on any file system")
}

// A disk hot-plugged into a restored guest (every warm start's disks) is seen by
// pre-nixos exactly as a disk that was there at boot: the same inventory, eligible
// disks, plan and storage verdict in its journal, and the same layout applied. The
// standard machine boots cold with its disk; the other machine starts warm with a disk
// of the same spec.
func TestHotPluggedDiskSeenAsAtBoot(t *testing.T) {
	cold := standard(t)
	warm := labtest.Boot(t, labtest.Standard(), labtest.Slug("hotplug"), labtest.Network(), labtest.Disks(labtest.Disk("disk0.img", 4096)),
		labtest.Warm("this test compares a hot-plugged disk with a boot's"))
	require.True(t, warm.HasMilestone("disks_attached"), "the warm machine's disk was hot-plugged after the restore")
	require.False(t, cold.HasMilestone("disks_attached"), "the standard machine's disk was there at boot")
	for _, m := range []*labtest.Machine{cold, warm} {
		m.WaitForStorage(labtest.Provisioned)
	}
	events := []string{"pre_nixos.storage.eligible", "pre_nixos.inventory.scanned", "pre_nixos.planner.plan", "pre_nixos.boot.storage_status"}
	seen := preNixosEvents(t, cold, events)
	require.Len(t, seen, len(events), "the cold boot's pre-nixos logged %v", events)
	require.Equal(t, seen, preNixosEvents(t, warm, events), "pre-nixos saw the hot-plugged disk as the boot's")
	layout := "lsblk -n -o NAME,SIZE,TYPE,FSTYPE,LABEL,MOUNTPOINT /dev/vda"
	require.Equal(t, cold.Succeed(layout), warm.Succeed(layout), "the same layout applied")
}

// preNixosEvents are the events named in the pre-nixos unit's journal of this boot,
// each without its time stamp.
func preNixosEvents(t *testing.T, m *labtest.Machine, names []string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, line := range strings.Split(m.Succeed("journalctl -b -o cat -u "+m.Profile().PreNixosUnit), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		name, _ := ev["event"].(string)
		for _, n := range names {
			if name == n {
				delete(ev, "timestamp")
				out[n] = ev
			}
		}
	}
	return out
}

// An image variant (here: pre-nixos held back by a drop-in, and another root key)
// started warm, from the standard fixture's saved guest with the variant's files written
// before the release, meets the state its own image's cold boot has at the same point,
// the boot held at getty.target: the same files, the unit as systemd loaded it, the same
// unit state, nothing of pre-nixos in the journal or in /run yet.
func TestWarmVariantMeetsItsColdBoot(t *testing.T) {
	variant := labtest.FixtureSpec(images.FixtureSpec{BreakUnit: "/bin/true", RootKey: labtest.OtherKey(t).AuthorizedKey})
	unit := labtest.FixtureProfile().PreNixosUnit
	files := images.ISORootKeyPath + " " + images.BreakUnitDropIn
	state := map[string]string{
		"files":   "sha256sum " + files + " && stat -c '%a %U:%G %n' " + files,
		"unit":    "systemctl cat " + unit,
		"show":    "systemctl show -p ExecStart -p ActiveState -p SubState -p NeedDaemonReload -p DropInPaths -p UnitFileState " + unit,
		"journal": "journalctl -b -o cat --no-pager -u " + unit + " 2>&1",
		"run":     "ls -A /run/pre-nixos 2>&1 || true",
	}
	atRelease := map[string]string{}
	warm := labtest.Boot(t, variant, labtest.Slug("variant-warm"), labtest.Network(), labtest.Disks(labtest.Disk("disk0.img", 4096)),
		labtest.Warm("this test compares a warm variant with its cold boot"), labtest.RecordAtRelease(state, atRelease))
	require.True(t, warm.HasMilestone("variant_written"), "the warm machine is the standard guest with the variant's files written")
	// After the release the variant behaves as its image: the held-back unit ran
	// /bin/true, wrote nothing, and left the disk blank.
	warm.WaitForUnit(unit, "active")
	warm.Fail("test -e /run/pre-nixos/storage-status")
	require.Empty(t, strings.TrimSpace(warm.Succeed("blkid -p /dev/vda || true")), "the disk is still blank")
	warm.Shutdown()

	cold := labtest.Boot(t, variant, labtest.Slug("variant-cold"), labtest.Network(), labtest.Disks(labtest.Disk("disk0.img", 4096)), labtest.Held())
	require.False(t, cold.HasMilestone("variant_written"), "the cold machine boots the variant's own image")
	for name, cmd := range state {
		require.Equal(t, cold.Succeed(cmd), atRelease[name], "%s at the release (%s)", name, cmd)
	}
}

// Scenario 7: an SSD and two HDDs get the RAID1 array and VGs the planner promises.
func TestMixedDisks(t *testing.T) {
	m := labtest.Boot(t, labtest.Standard(), labtest.Slug("mixed-disks"), labtest.Network(),
		labtest.Disks(
			labtest.DiskSpec{Name: "ssd.img", SizeMB: 4096, Bus: "scsi-hd", RotationRate: 1, Serial: "ssd0"},
			labtest.DiskSpec{Name: "hdd1.img", SizeMB: 3072, Bus: "scsi-hd", RotationRate: 7200, Serial: "hdd1"},
			labtest.DiskSpec{Name: "hdd2.img", SizeMB: 3072, Bus: "scsi-hd", RotationRate: 7200, Serial: "hdd2"}),
		labtest.Warm("what pre-nixos makes of three blank disks does not depend on the boot before it starts"))
	m.WaitForStorage(labtest.Provisioned)
	var plan struct {
		Arrays []struct{ Name, Level string } `json:"arrays"`
		VGs    []struct{ Name string }        `json:"vgs"`
		LVs    []struct{ Name, VG string }    `json:"lvs"`
	}
	out := m.Succeed("pre-nixos --plan-only --output plan 2>/dev/null")
	require.NoError(t, json.Unmarshal([]byte(out), &plan), "plan JSON (stdout only; logs go to stderr):\n%s", out)
	require.NotEmpty(t, plan.Arrays, "two equal HDDs make an array")
	for _, a := range plan.Arrays {
		require.Regexp(t, `Raid Level : `+a.Level, m.Succeed("mdadm --detail /dev/"+a.Name))
	}
	var vgs, lvs []string
	for _, v := range plan.VGs {
		vgs = append(vgs, v.Name)
	}
	for _, v := range plan.LVs {
		lvs = append(lvs, v.VG+" "+v.Name)
	}
	require.Equal(t, sorted(vgs), sorted(strings.Fields(m.Succeed("vgs --noheadings -o vg_name"))), "the VGs the plan promised")
	require.Equal(t, sorted(lvs), sorted(lines(m.Succeed("lvs --noheadings -o vg_name,lv_name"))), "the LVs the plan promised")
}

// Scenario 8: pre-nixos-detect-storage's exit codes on a blank and a seeded disk, and
// the plan, captured. pre-nixos itself is held back so the disk stays blank.
func TestStorageDetectionProbe(t *testing.T) {
	m := labtest.Boot(t, labtest.BrokenPreNixos("/bin/true"), labtest.Slug("detect-probe"), labtest.Network(), labtest.Disks(labtest.Disk("disk0.img", 4096)),
		labtest.Warm("the probe runs by hand on a held-back pre-nixos; nothing of it depends on the boot"))
	_, blank := m.Execute("pre-nixos-detect-storage")
	require.Equal(t, 1, blank, "exit 1: no existing storage on a blank disk")
	require.Contains(t, m.Capture("plan-blank.json", "pre-nixos --plan-only --output plan 2>/dev/null"), `"main"`)
	m.Succeed("mkfs.ext4 -q -F /dev/vda")
	_, seeded := m.Execute("pre-nixos-detect-storage")
	require.Equal(t, 0, seeded, "exit 0: existing storage after mkfs")
	require.Equal(t, "running", string(m.Metadata().Outcome))
}

// sorted returns s sorted.
func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

// lines splits command output into its lines, each with its fields joined by one space.
func lines(out string) []string {
	var ls []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		ls = append(ls, strings.Join(strings.Fields(l), " "))
	}
	return ls
}
