package shell_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/shell"
)

// readOnly makes the read end of a pipe a console source (nothing is sent on the port).
type readOnly struct{ io.Reader }

func (readOnly) Write(p []byte) (int, error) {
	return 0, errors.New("the frame channel is guest-to-host only")
}

// channelRig is a fake guest whose VM has a frame port: a pipe from the guest to a
// raw (un-normalised) console, as vm wires the virtio-serial socket.
func channelRig(t *testing.T, b fakeguest.Behaviour) (*rig, *console.Console, *os.File, *fakeguest.Buffer) {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	chlog := &fakeguest.Buffer{}
	ch := console.New(readOnly{r}, console.Options{SerialLog: chlog})
	t.Cleanup(func() { w.Close(); r.Close(); <-ch.Done() })
	b.Channel = w
	return start(t, b), ch, w, chlog
}

func loginWith(t *testing.T, r *rig, opts shell.Options) *shell.Shell {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sh, err := shell.Login(ctx, r.con, shell.Profile{Name: "fake", LoginUser: "user", LoginPassword: "user", RootPassword: "root"}, opts)
	require.NoError(t, err)
	require.Equal(t, 0, sh.UID())
	return sh
}

func TestChannelCarriesExactOutputOffTheConsole(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	outputs := map[string][]byte{}
	r, ch, _, chlog := channelRig(t, fakeguest.Behaviour{Login: "getty", KernelNoise: true, EchoAlways: true,
		Commands: func(_ *fakeguest.Shell, cmd string) ([]byte, int) {
			if out, ok := outputs[cmd]; ok {
				return out, len(out) % 256
			}
			return nil, -1
		}})
	opts := fast()
	opts.Channel = func() *console.Console { return ch }
	sh := loginWith(t, r, opts)
	require.Equal(t, shell.TransportChannel, sh.Transport(), sh.ChannelStatus())
	require.Equal(t, "in use", sh.ChannelStatus())

	for i := 0; i < 40; i++ {
		out := make([]byte, rng.Intn(5000))
		rng.Read(out)
		switch i % 5 {
		case 0:
			out = nil
		case 1:
			out = []byte("distinctive output line\n")
		}
		cmd := fmt.Sprintf("produce %d", i)
		outputs[cmd] = out
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := sh.Run(ctx, cmd, shell.AllowFail())
		cancel()
		require.NoError(t, err, cmd)
		require.True(t, bytes.Equal(out, res.Output), "%s: %d bytes back, want %d", cmd, len(res.Output), len(out))
		require.Equal(t, len(out)%256, res.ExitStatus, cmd)
	}
	// A failing status is still an error unless allowed, on this transport too.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := sh.Run(ctx, "false")
	var ee *shell.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.Result.ExitStatus)
	// Long commands are typed in pieces into a shell variable and still run on the channel.
	long := "echo " + strings.Repeat("z", 5000)
	res, err := sh.Run(ctx, long)
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("z", 5000)+"\n", string(res.Output))

	require.NotContains(t, r.serial.String(), "distinctive output", "command output never touches the console")
	require.Contains(t, r.serial.String(), "produce", "the typed commands were echoed (EchoAlways)")
	require.Contains(t, chlog.String(), "bootlab-channel-ok", "the channel log keeps what the port carried")
}

func TestChannelUnusableFallsBackToTheConsole(t *testing.T) {
	cases := map[string]struct {
		b    fakeguest.Behaviour
		none bool
		why  string
	}{
		"no channel offered":    {none: true, why: "no frame channel"},
		"port missing in guest": {b: fakeguest.Behaviour{}, why: "no virtio-serial port named org.bootlab.frame"},
		"port busy":             {b: fakeguest.Behaviour{ChannelBusy: true}, why: "Device or resource busy"},
		"port never delivers":   {b: fakeguest.Behaviour{ChannelDead: true}, why: "framed probe on it failed"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			c.b.Login = "getty"
			var r *rig
			opts := fast()
			opts.ChannelTimeout = 300 * time.Millisecond
			switch {
			case c.none:
				r = start(t, c.b)
			case name == "port missing in guest":
				// The host listens but the guest has no such port: Channel stays nil in
				// the fake, which __blc reports as status 1.
				r = start(t, c.b)
				_, ch, _, _ := channelRig(t, fakeguest.Behaviour{Login: "silent"})
				opts.Channel = func() *console.Console { return ch }
			default:
				var ch *console.Console
				r, ch, _, _ = channelRig(t, c.b)
				opts.Channel = func() *console.Console { return ch }
			}
			sh := loginWith(t, r, opts)
			require.Equal(t, shell.TransportConsole, sh.Transport())
			require.Contains(t, sh.ChannelStatus(), c.why)
			res := run(t, sh, "echo still framed")
			require.Equal(t, "still framed\n", string(res.Output))
		})
	}
}

func TestChannelClosingMidCommandIsAClosedError(t *testing.T) {
	r, ch, w, _ := channelRig(t, fakeguest.Behaviour{Login: "getty", Delay: 200 * time.Millisecond})
	opts := fast()
	opts.Channel = func() *console.Console { return ch }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sh, err := shell.Login(ctx, r.con, shell.Profile{Name: "fake", LoginUser: "user", LoginPassword: "user", RootPassword: "root"}, opts)
	require.NoError(t, err)
	require.Equal(t, shell.TransportChannel, sh.Transport())
	go func() { time.Sleep(50 * time.Millisecond); w.Close() }()
	_, err = sh.Run(ctx, "echo never seen")
	require.ErrorIs(t, err, console.ErrClosed)
	require.Contains(t, err.Error(), "frame channel")
}
