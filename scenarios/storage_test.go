package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/vm"
	"github.com/bootlab/bootlab/provisioner/status"
)

// Scenario 1: one blank 4 GiB virtio disk is provisioned automatically at boot.
func TestCleanDisk(t *testing.T) {
	s := standard(t)
	require.NoError(t, s.err, "pre-nixos checks on the standard VM (run directory %s)", s.l.Dir())
	st := s.checks.Storage
	require.Equal(t, status.StateApplied, st["STATE"])
	require.Equal(t, "auto-applied", st["DETAIL"])
	p := s.l.Profile()
	require.Equal(t, p.PreNixosDone, strings.TrimSpace(statusOut(t, s, "systemctl is-active "+p.PreNixosUnit)),
		"the provisioner's oneshot ends %s after success (RemainAfterExit, docs/decisions.md)", p.PreNixosDone)
	require.Contains(t, run(t, s.l, "vgs --noheadings -o vg_name"), "main")
	require.Contains(t, run(t, s.l, "lvs --noheadings -o lv_name main"), "slash")
	// The plan's file systems exist with their labels and are mounted where it says.
	root := strings.Fields(run(t, s.l, "findmnt -n -o SOURCE,FSTYPE /mnt"))
	require.Equal(t, []string{"/dev/mapper/main-slash", "ext4"}, root)
	boot := strings.Fields(run(t, s.l, "findmnt -n -o FSTYPE,LABEL /mnt/boot"))
	require.Len(t, boot, 2)
	require.Equal(t, "vfat", boot[0])
	require.Regexp(t, `^EFI[0-9]*$`, boot[1])
	label := strings.TrimSpace(run(t, s.l, "blkid -s LABEL -o value /dev/mapper/main-slash"))
	require.NotEmpty(t, label, "the root file system has a label")
}

func statusOut(t *testing.T, s *sharedVM, cmd string) string {
	out, _ := runStatus(t, s.l, cmd)
	return out
}

// Scenario 4: the key embedded in the ISO is the generated one, and metadata says so.
func TestEmbeddedKey(t *testing.T) {
	s := standard(t)
	require.NotNil(t, s.l, "the standard VM started: %v", s.err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, err := isoinspect.RootKey(ctx, s.iso.Path)
	require.NoError(t, err, "bootlab inspect's key lookup on %s", s.iso.Path)
	require.NotNil(t, key, "bootlab inspect finds an embedded root key on %s", s.iso.Path)
	require.Equal(t, s.key.Fingerprint, key.Fingerprint, "the ISO carries the generated key")
	require.Equal(t, s.key.AuthorizedKey, strings.Join(strings.Fields(key.Line)[:2], " "))
	m := s.l.Metadata()
	require.Equal(t, s.key.Fingerprint, m.Image.RootKeyFingerprint, "metadata.json records the same fingerprint")
	// The private half never reaches a run directory or a log.
	require.NoError(t, filepath.Walk(s.l.Dir(), func(path string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() || info.Size() > 64<<20 {
			return err
		}
		b, rerr := os.ReadFile(path)
		if rerr == nil && strings.Contains(string(b), "PRIVATE KEY") {
			return fmt.Errorf("private key material in %s", path)
		}
		return nil
	}))
	st, err := os.Stat(s.key.PrivatePath)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the generated private key is 0600")
	// Where the key sits on the ISO is the image's own layout (the profile says).
	p := s.l.Profile()
	require.Regexp(t, p.ISOKey, key.Layer+":"+key.Path, "the %s profile's place for the key on the ISO", p.Name)
	// And the guest has that key where the image keeps it, and for root, 0600.
	require.Contains(t, run(t, s.l, "cat "+p.GuestKey), strings.Fields(s.key.AuthorizedKey)[1])
	require.Equal(t, "600\n", run(t, s.l, "stat -c %a "+p.AuthorizedKeys))
	require.Contains(t, run(t, s.l, "cat "+p.AuthorizedKeys), strings.Fields(s.key.AuthorizedKey)[1])
}

// Scenario 5: a disk that already holds data is never touched without force.
func TestExistingStorage(t *testing.T) {
	labtest.Slot(t, 65*time.Second)
	labtest.HostTool(t, "mkfs.ext4", "e2fsprogs")
	labtest.HostTool(t, "debugfs", "e2fsprogs")
	marker := "bootlab marker " + time.Now().Format(time.RFC3339Nano)
	l, key := bootFixture(t, images.FixtureSpec{}, labtest.Slug("existing-storage"), labtest.Disks(vm.DiskSpec{Name: "disk0.img", SizeMB: 4096, Seed: labtest.SeedExt4("precious", "marker.txt", marker)}), labtest.Network())
	c := checks(l, key, t)
	c.WantState, c.WantDetail = status.StatePlanOnly, status.DetailExistingStorage
	ctx, cancel := context.WithTimeout(context.Background(), scaled(12*time.Minute))
	defer cancel()
	require.NoError(t, c.CheckStorage(ctx))
	require.Contains(t, run(t, l, "blkid -s LABEL -o value /dev/vda"), "precious", "the file system is still there")
	_, st := runStatus(t, l, "vgs main")
	require.NotEqual(t, 0, st, "no VG was created")
	// Power off, then read the marker on the host from the disk image itself.
	_, err := l.PowerOff(ctx)
	require.NoError(t, err)
	require.Equal(t, marker, labtest.ReadExt4File(t, filepath.Join(l.Dir(), "disk0.img"), "marker.txt"), "the marker survived the boot")
}

// Scenario 6: RAID and LVM residue is torn down only with force, then the blank disks
// are provisioned. The residue is seeded in a first boot of a fixture whose pre-nixos
// does nothing (this host's kernel has neither md nor device-mapper).
func TestRAIDLVMResidueForce(t *testing.T) {
	labtest.Slot(t, 280*time.Second)
	disks := []vm.DiskSpec{disk("disk0.img", 4096), disk("disk1.img", 1536), disk("disk2.img", 1536)}
	seeder, _ := bootFixture(t, images.FixtureSpec{BreakUnit: "/bin/true"}, labtest.Slug("residue-seed"), labtest.Disks(disks...), labtest.Network())
	for _, cmd := range []string{
		"mdadm --create /dev/md127 --run --metadata=1.2 --level=1 --raid-devices=2 /dev/vdb /dev/vdc",
		"pvcreate -ff -y /dev/md127", "vgcreate vg_residue /dev/md127",
		"lvcreate -y -n lv_residue -L 100m vg_residue", "mkfs.ext4 -q -F /dev/vg_residue/lv_residue",
		"mkdir -p /tmp/r && mount /dev/vg_residue/lv_residue /tmp/r && echo residue-marker > /tmp/r/marker && umount /tmp/r",
		"vgchange -an vg_residue", "mdadm --stop /dev/md127", "sync",
	} {
		run(t, seeder, cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scaled(20*time.Minute))
	defer cancel()
	_, err := seeder.PowerOff(ctx)
	require.NoError(t, err)

	// Second boot on the same disk files: plan only, nothing destroyed.
	for i := range disks {
		disks[i].Path = filepath.Join(seeder.Dir(), disks[i].Name)
	}
	l, key := bootFixture(t, images.FixtureSpec{}, labtest.Slug("residue-force"), labtest.Disks(disks...), labtest.Network())
	c := checks(l, key, t)
	c.WantState, c.WantDetail = status.StatePlanOnly, status.DetailExistingStorage
	require.NoError(t, c.CheckStorage(ctx))
	require.Contains(t, run(t, l, "mdadm --examine /dev/vdb"), "Raid Level", "the residue is untouched without force")

	// With force: the residue goes and the disks are provisioned in the same run.
	run(t, l, "systemctl set-environment PRE_NIXOS_FORCE_CLEANUP=1 && rm -f /run/pre-nixos/storage-status && systemctl restart "+l.Profile().PreNixosUnit)
	c.WantState, c.WantDetail = status.StateApplied, status.DetailForceCleanup
	require.NoError(t, c.CheckStorage(ctx))
	out, _ := runStatus(t, l, "cat /proc/mdstat")
	require.NotContains(t, out, "md127")
	_, st := runStatus(t, l, "vgs vg_residue")
	require.NotEqual(t, 0, st, "vg_residue is gone")
	lvs := run(t, l, "lvs --noheadings -o lv_name")
	require.NotContains(t, lvs, "lv_residue")
	require.Contains(t, lvs, "slash")
	// No file system anywhere still holds the marker.
	found, _ := runStatus(t, l, `for d in $(blkid -o device -t TYPE=ext4); do mkdir -p /tmp/chk; if mount -o ro "$d" /tmp/chk 2>/dev/null; then test -e /tmp/chk/marker && echo "$d"; umount /tmp/chk; fi; done; true`)
	require.Empty(t, strings.TrimSpace(found), "the residue marker is not on any file system")
}

// Scenario 7: an SSD and two HDDs get the RAID1 array and VGs the planner promises.
func TestMixedDisks(t *testing.T) {
	labtest.Slot(t, 75*time.Second)
	disks := []vm.DiskSpec{
		{Name: "ssd.img", SizeMB: 4096, Bus: "scsi-hd", RotationRate: 1, Serial: "ssd0"},
		{Name: "hdd1.img", SizeMB: 3072, Bus: "scsi-hd", RotationRate: 7200, Serial: "hdd1"},
		{Name: "hdd2.img", SizeMB: 3072, Bus: "scsi-hd", RotationRate: 7200, Serial: "hdd2"},
	}
	l, key := bootFixture(t, images.FixtureSpec{}, labtest.Slug("mixed-disks"), labtest.Disks(disks...), labtest.Network(),
		labtest.Warm("what pre-nixos makes of three blank disks does not depend on the boot before it starts"))
	ctx, cancel := context.WithTimeout(context.Background(), scaled(12*time.Minute))
	defer cancel()
	require.NoError(t, checks(l, key, t).CheckStorage(ctx))
	var plan struct {
		Arrays []struct{ Name, Level string } `json:"arrays"`
		VGs    []struct{ Name string }        `json:"vgs"`
		LVs    []struct{ Name, VG string }    `json:"lvs"`
	}
	out := run(t, l, "pre-nixos --plan-only --output plan 2>/dev/null")
	require.NoError(t, json.Unmarshal([]byte(out), &plan), "plan JSON (stdout only; logs go to stderr):\n%s", out)
	require.NotEmpty(t, plan.Arrays, "two equal HDDs make an array")
	for _, a := range plan.Arrays {
		detail := run(t, l, "mdadm --detail /dev/"+a.Name)
		require.Regexp(t, regexp.MustCompile(`Raid Level : `+a.Level), detail)
	}
	var want, got []string
	for _, v := range plan.VGs {
		want = append(want, v.Name)
	}
	got = strings.Fields(run(t, l, "vgs --noheadings -o vg_name"))
	sort.Strings(want)
	sort.Strings(got)
	require.Equal(t, want, got, "the VGs the plan promised")
	want, got = nil, nil
	for _, v := range plan.LVs {
		want = append(want, v.VG+"/"+v.Name)
	}
	for _, line := range strings.Split(strings.TrimSpace(run(t, l, "lvs --noheadings -o vg_name,lv_name")), "\n") {
		f := strings.Fields(line)
		got = append(got, f[0]+"/"+f[1])
	}
	sort.Strings(want)
	sort.Strings(got)
	require.Equal(t, want, got, "the LVs the plan promised")
}

// Scenario 8: pre-nixos-detect-storage's exit codes on a blank and a seeded disk, and
// the plan, captured. pre-nixos itself is held back so the disk stays blank.
func TestStorageDetectionProbe(t *testing.T) {
	labtest.Slot(t, 75*time.Second)
	l, _ := bootFixture(t, images.FixtureSpec{BreakUnit: "/bin/true"}, labtest.Slug("detect-probe"), labtest.Disks(disk("disk0.img", 4096)), labtest.Network())
	_, blank := runStatus(t, l, "pre-nixos-detect-storage")
	require.Equal(t, 1, blank, "exit 1: no existing storage on a blank disk")
	plan := run(t, l, "pre-nixos --plan-only --output plan 2>/dev/null")
	require.Contains(t, plan, `"main"`)
	require.NoError(t, os.WriteFile(filepath.Join(l.Dir(), "captures", "plan-blank.json"), []byte(plan), 0o644))
	run(t, l, "mkfs.ext4 -q -F /dev/vda")
	_, seeded := runStatus(t, l, "pre-nixos-detect-storage")
	require.Equal(t, 0, seeded, "exit 0: existing storage after mkfs")
	m := l.Metadata()
	require.Equal(t, runrec.Running, m.Outcome)
}
