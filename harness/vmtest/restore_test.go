package vmtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// TestSaveAndRestoreGuestState: a guest's state saved at its root shell comes back in a
// new QEMU (vm.Spec.RestoreFrom) without booting: the file written before the save is
// there, the shell is verified as root again, and the restored console never shows a
// kernel starting. This is the mechanism of boot once, restore many (docs/benchmarks.md).
func TestSaveAndRestoreGuestState(t *testing.T) {
	img := mini(t, images.MiniSpec{})
	image := miniImage(img, shell.Mini)
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()

	donor := start(t, "state-donor", image, nil)
	_, err := donor.Login(ctx)
	require.NoError(t, err)
	_, err = donor.Succeed(ctx, "echo restored-from-state > /tmp/marker")
	require.NoError(t, err)
	state := filepath.Join(t.TempDir(), "guest.state")
	require.NoError(t, donor.SaveState(ctx, state))
	st, err := donor.RunState(ctx)
	require.NoError(t, err)
	require.Equal(t, "postmigrate", st, "the donor is paused once its state is saved")
	require.NoError(t, donor.CloseSaved(ctx, "state saved"))
	m, err := runrec.ReadMetadata(donor.Dir())
	require.NoError(t, err)
	require.Equal(t, runrec.Interrupted, m.Outcome, "a saved donor is not a verdict on the image")

	warm := start(t, "state-restored", image, func(s *vm.Spec) { s.RestoreFrom = state })
	_, err = warm.ResumeShell(ctx, scaled(30*time.Second))
	require.NoError(t, err, "the restored shell is verified as root")
	out, err := warm.Succeed(ctx, "cat /tmp/marker")
	require.NoError(t, err)
	require.Equal(t, "restored-from-state\n", out, "the guest's memory came back")
	serial, err := warm.SerialLog()
	require.NoError(t, err)
	require.NotContains(t, string(serial), "Linux version", "the restored guest did not boot")
}
