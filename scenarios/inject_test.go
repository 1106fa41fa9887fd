package scenarios

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/inject"
	"github.com/bootlab/bootlab/harness/labtest"
)

// TestInjectPreNixosIntoInstaller carries pre-nixos into Debian's own installer
// (busybox, no systemd, no util-linux) with two blank virtio disks of different sizes:
// the static binary is uploaded and its sha256 checked there, it plans with
// --plan-only, and the plan must be the plan of the disks the guest's own /sys reports
// (names, sizes, rotational flags). The commands it called that the installer lacks are
// named. (The user's step 5: install pre-nixos by hand into a baseline and plan there.)
func TestInjectPreNixosIntoInstaller(t *testing.T) {
	m := labtest.BootInstallerShell(t, "inject-installer", 2100, 2400)
	res := m.InjectPreNixos()

	facts := m.SysBlock()
	cands := inject.Candidates(facts)
	require.Len(t, cands, 2, "two virtio disks in the installer's /sys/block: %+v", facts)
	require.NotEqual(t, cands[0].Sectors, cands[1].Sectors, "disks of different sizes")
	require.NoError(t, inject.Check(res, facts), "the plan against the installer's /sys")
	disks, err := inject.PlanDisks(res.Plan)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"vda", "vdb"}, disks, "both disks planned")

	// The installer has no findmnt: it is named, and pre-nixos looked for a mounted boot
	// medium in the kernel's mount table instead, where there is none (the installer runs
	// from its initramfs), so the plan above stands on complete facts.
	require.Contains(t, res.Missing, "findmnt", "the installer's missing tool is named")
	require.Contains(t, string(res.Log), `"event":"pre_nixos.storage.boot_medium_from_mountinfo"`)
	require.NotRegexp(t, ` (iso9660|squashfs) `, m.Succeed("cat /proc/mounts"), "a boot medium pre-nixos could not look for")
	m.Mark("inject_checked")
}
