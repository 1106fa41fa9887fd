package scenarios

import (
	"context"
	"path/filepath"
	"testing"
	"time"

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
	labtest.Slot(t, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), labtest.Scaled(10*time.Minute))
	defer cancel()

	bin, err := inject.PreNixos(ctx)
	require.NoError(t, err)
	l, sh := labtest.InstallerShell(ctx, t, "inject-installer", 2100, 2400)

	res, err := inject.Inject(ctx, sh, inject.Options{Binary: bin, Dir: filepath.Join(l.Dir(), "inject"), Timeout: labtest.Scaled(2 * time.Minute)})
	require.NoError(t, err, "injecting pre-nixos into the installer")
	t.Logf("pre-nixos %s over %s; missing in the installer: %v\nplan:\n%s", res.SHA256, sh.Transport(), res.Missing, res.Plan)

	facts, err := inject.ReadSysBlock(ctx, sh)
	require.NoError(t, err)
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
	mounts, err := sh.Run(ctx, "cat /proc/mounts")
	require.NoError(t, err)
	require.NotRegexp(t, ` (iso9660|squashfs) `, string(mounts.Output), "a boot medium pre-nixos could not look for")
	l.Mark("inject_checked")
}
