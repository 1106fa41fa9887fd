package shell_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/progress"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/shell"
)

// TestWaitsReportElapsedOnTheProgressLine: a wait in the guest shows on the progress line
// the context carries (bootlab run's stderr) while it lasts, and ends with a line saying
// how long it took and whether it succeeded; a terminal's live line ticks each second.
func TestWaitsReportElapsedOnTheProgressLine(t *testing.T) {
	r := start(t, fakeguest.Behaviour{Login: "root-shell", Commands: func(_ *fakeguest.Shell, cmd string) ([]byte, int) {
		switch {
		case strings.Contains(cmd, "systemctl is-active 'pre-nixos'"):
			time.Sleep(1500 * time.Millisecond) // long enough for a tick
			return []byte("active\n"), 0
		case strings.Contains(cmd, "systemctl is-active 'broken'"):
			return []byte("failed\n"), 3
		}
		return nil, -1
	}})
	sh := login(t, r, shell.Profile{Name: "root"})

	var live fakeguest.Buffer
	ctx, cancel := context.WithTimeout(progress.WithLine(context.Background(), progress.New(&live, true)), time.Minute)
	defer cancel()
	state, err := sh.WaitUnit(ctx, "pre-nixos", "active")
	require.NoError(t, err)
	require.Equal(t, "active", state)
	require.Contains(t, live.String(), "\r\x1b[Kwaiting for unit pre-nixos to be active (1s)", "the live line ticks the wait's elapsed time")
	require.Regexp(t, `\r\x1b\[Kwaiting for unit pre-nixos to be active: done in [12]s\n$`, live.String())

	var plain fakeguest.Buffer
	ctx = progress.WithLine(ctx, progress.New(&plain, false))
	_, err = sh.WaitUnit(ctx, "broken", "active")
	require.Error(t, err)
	require.Equal(t, "waiting for unit broken to be active (0s)\nwaiting for unit broken to be active: failed after 0s\n", plain.String(),
		"without a terminal: plain lines, no escape sequences")
}
