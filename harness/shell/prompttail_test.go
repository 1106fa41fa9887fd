package shell_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/shell"
)

// A kernel message printed just after the first prompt (busybox's late `tsc: Refined
// TSC` lines) leaves the console ending in a kernel line. The prompt before it must
// still be recognised: before, the login waited the profile's WakeupAfter (15 s) for an
// Enter to draw the prompt again.
func TestPromptFollowedByKernelLinesIsSeen(t *testing.T) {
	r := start(t, fakeguest.Behaviour{Login: "root-shell",
		AfterFirstPrompt: "[    5.123456] tsc: Refined TSC clocksource calibration: 2096.064 MHz\n[    5.130001] clocksource: Switched to clocksource tsc\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := shell.Options{LoginTimeout: 5 * time.Second, StepTimeout: 3 * time.Second, Settle: 30 * time.Millisecond}
	sh, err := shell.Login(ctx, r.con, shell.Profile{Name: "root", WakeupAfter: time.Minute}, opts)
	require.NoError(t, err, "the prompt before the kernel lines is the first prompt")
	require.Equal(t, 0, sh.UID())
	for _, l := range r.guest.Seen() {
		require.NotEqual(t, "", l, "no Enter typed to redraw the prompt")
	}
}
