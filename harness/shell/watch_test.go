package shell_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/capture"
	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/shell"
)

// TestShellDeathIsReportedAtOnce is issue 18's watchdog on the fake guest, on both
// transports: a command that ends the root shell fails with a ShellGoneError that says
// how, instead of waiting out the command's timeout (here 10 s; in `bootlab run` 5 min).
func TestShellDeathIsReportedAtOnce(t *testing.T) {
	cases := []struct {
		cmd    string
		status int
		what   string
	}{
		{"exit 3", 3, "the root shell exited with status 3"},
		{"exec true", -1, "the prompt of the shell it was started from came back"},
		{"kill -9 $$", -1, "the prompt of the shell it was started from came back"},
		{"reboot -f", -1, "the guest is rebooting or powering off"},
	}
	for _, transport := range []string{shell.TransportChannel, shell.TransportConsole} {
		for _, c := range cases {
			t.Run(transport+"/"+c.cmd, func(t *testing.T) {
				b := fakeguest.Behaviour{Login: "getty", PromptDelay: 5 * time.Millisecond}
				opts := fast()
				var r *rig
				if transport == shell.TransportChannel {
					var ch *console.Console
					r, ch, _, _ = channelRig(t, b)
					opts.Channel = func() *console.Console { return ch }
				} else {
					r = start(t, b)
				}
				sh := loginWith(t, r, opts)
				require.Equal(t, transport, sh.Transport(), sh.ChannelStatus())
				// A command that merely fails, and a subshell that exits, are not deaths.
				res, err := sh.Run(context.Background(), "(exit 4)", shell.AllowFail(), shell.Timeout(5*time.Second))
				require.NoError(t, err)
				require.Equal(t, 4, res.ExitStatus)

				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err = sh.Run(ctx, c.cmd)
				var gone *shell.ShellGoneError
				require.ErrorAs(t, err, &gone, "got %v", err)
				require.ErrorIs(t, err, shell.ErrShellGone)
				require.Contains(t, err.Error(), c.what)
				require.Contains(t, err.Error(), "while running \""+c.cmd+"\"")
				require.Contains(t, err.Error(), "last console output:")
				require.Equal(t, c.status, gone.Status)
				require.True(t, capture.Gone(err), "capture stops: no command can run in this shell")

				// Nothing more runs in a shell that is not the one proved root.
				_, err = sh.Run(context.Background(), "id -u", shell.Timeout(5*time.Second))
				require.ErrorIs(t, err, shell.ErrShellGone)
			})
		}
	}
}

// A login shell that ends brings a getty's login prompt back.
func TestLoginShellDeathShowsLoginPrompt(t *testing.T) {
	r := start(t, fakeguest.Behaviour{Login: "getty", LoginAgain: true, Users: map[string]string{"root": "root"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sh, err := shell.Login(ctx, r.con, shell.Profile{Name: "rootlogin", LoginUser: "root", LoginPassword: "root"}, fast())
	require.NoError(t, err)
	_, err = sh.Run(ctx, "kill -9 $$")
	var gone *shell.ShellGoneError
	require.ErrorAs(t, err, &gone, "got %v", err)
	require.Contains(t, err.Error(), "the console shows a login prompt")
}

// A slow guest's late prompt of the shell running the command is not its death. On the
// channel nothing else reaches the console while the command runs, so the stale prompt
// stays the last line for the whole command.
func TestOwnLatePromptIsNotDeath(t *testing.T) {
	r, ch, _, _ := channelRig(t, fakeguest.Behaviour{Login: "root-shell", StalePrompt: true, PromptDelay: 200 * time.Millisecond, Delay: 600 * time.Millisecond})
	opts := fast()
	opts.Channel = func() *console.Console { return ch }
	opts.StepTimeout = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sh, err := shell.Login(ctx, r.con, shell.Profile{Name: "root"}, opts)
	require.NoError(t, err)
	require.Equal(t, shell.TransportChannel, sh.Transport(), sh.ChannelStatus())
	for i := 0; i < 3; i++ {
		res, err := sh.Run(context.Background(), "echo still here", shell.Timeout(10*time.Second))
		require.NoError(t, err)
		require.Equal(t, "still here\n", string(res.Output))
	}
}

// Issue 18: a guest with no writable /tmp made every console-protocol command wait out
// its timeout. The frame now ends at once with the shell's own words.
func TestNoWritableTempDirIsReportedInTheGuestsWords(t *testing.T) {
	r := start(t, fakeguest.Behaviour{Login: "root-shell", NoTmp: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := shell.Login(ctx, r.con, shell.Profile{Name: "root"}, fast())
	require.Error(t, err)
	require.Contains(t, err.Error(), "no writable directory for its output file")
	require.Contains(t, err.Error(), "sh: can't create /tmp/.bl.83.o: nonexistent directory")
	require.NotContains(t, err.Error(), "timed out")
}
