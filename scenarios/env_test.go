package scenarios

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/keys"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"github.com/bootlab/bootlab/harness/verify"
	"github.com/bootlab/bootlab/harness/vm"
)

// The scaffolding every scenario shares: the fixture VM, the shared VM, and two
// one-line command helpers. Everything about a VM's life (its records, its verdict,
// the debug keep) is labtest's.

// scaled is the one timeout scale (labtest.Scaled), under a short name.
var scaled = labtest.Scaled

// bootFixture starts a fixture VM (fs says which variant) for t, logged in as root, and
// returns it with the key embedded in its image. Further options add disks, the
// network, a slug.
func bootFixture(t *testing.T, fs images.FixtureSpec, opts ...labtest.Option) (*lab.Lab, *keys.Pair) {
	t.Helper()
	img, _, key := labtest.Fixture(t, fs)
	base := []labtest.Option{labtest.Image(img), labtest.RootKey(key.Fingerprint), labtest.Login()}
	return labtest.StartT(t, append(base, opts...)...), key
}

// disk makes a virtio disk spec.
func disk(name string, mb int) vm.DiskSpec { return vm.DiskSpec{Name: name, SizeMB: mb} }

// checks returns the shared pre-nixos checks for a lab; -pause-after storage/network
// pause where they pass.
func checks(l *lab.Lab, key *keys.Pair, t *testing.T) *verify.PreNixos {
	return &verify.PreNixos{Lab: l, Key: key, Out: labtest.LogWriter(t),
		Pause:          func(stage string) { labtest.PauseAt(t, l, stage, labtest.FlagDebug()) },
		StorageTimeout: scaled(10 * time.Minute), NetworkTimeout: scaled(5 * time.Minute), SSHTimeout: scaled(5 * time.Minute)}
}

// run runs a framed command that must succeed and returns its output.
func run(t *testing.T, l *lab.Lab, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	out, err := l.Succeed(ctx, cmd)
	require.NoError(t, err, "running %q (run directory %s)", cmd, l.Dir())
	return out
}

// runStatus runs a command and returns output and exit status, whatever it is.
func runStatus(t *testing.T, l *lab.Lab, cmd string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	out, st, err := l.Status(ctx, cmd)
	require.NoError(t, err, "running %q (run directory %s)", cmd, l.Dir())
	return out, st
}

// --- the shared standard VM: scenarios 1-4 share one boot ---------------------------

// Scenarios 1 (clean disk), 2 (network + SSH), 3 (sshd independence) and 4 (embedded
// key) all observe the same thing, a fixture booted on one blank disk, from different
// sides; none changes the VM, so one boot proves all four without weakening any. Its
// setup runs the pre-nixos checks once; each scenario asserts their result.
var (
	standardOnce sync.Once
	standardVM   *labtest.Shared
	std          sharedVM // what the setup found: key, ISO, checks
)

// sharedVM is what a scenario on the standard VM sees.
type sharedVM struct {
	l      *lab.Lab
	key    *keys.Pair
	iso    *images.ISO
	checks *verify.PreNixos
	err    error // the start's and the checks' result, asserted by each scenario
}

// standard boots the shared VM once and runs the pre-nixos checks on it.
func standard(t *testing.T) *sharedVM {
	t.Helper()
	// The tests on it only look, so they run beside the others; its boot and checks
	// hold a VM slot (labtest.Slot), the idle guest afterwards does not.
	t.Parallel()
	vmgate.VM(t) // before the Once: a skip inside it would leave the shared VM unset
	standardOnce.Do(func() {
		img, iso, key := labtest.Fixture(t, images.FixtureSpec{})
		std = sharedVM{key: key, iso: iso}
		opts := append([]labtest.Option{}, labtest.Image(img), labtest.RootKey(key.Fingerprint), labtest.Login(), labtest.Slug("standard"),
			labtest.Disks(disk("disk0.img", 4096)), labtest.Network())
		standardVM = labtest.NewShared("standard", func(ctx context.Context, l *lab.Lab) error {
			std.checks = checks(l, key, t)
			return std.checks.Run(ctx)
		}, opts...).InSlot(90 * time.Second)
	})
	require.NotNil(t, standardVM, "the standard VM could not be set up (the first scenario that asked for it says why)")
	l, err := standardVM.Use(t)
	return &sharedVM{l: l, key: std.key, iso: std.iso, checks: std.checks, err: err}
}

// closeShared stops the standard VM after the last scenario (TestMain), kept first for
// a person if a scenario on it failed under -boot-image-debug.
func closeShared() {
	if standardVM != nil {
		_ = standardVM.Close()
	}
}
