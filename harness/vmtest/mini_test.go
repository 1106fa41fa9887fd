package vmtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// TestFramedCommandsExactUnderKernelNoise is issue 2's proof: log in as the user on the
// mini image, escalate with su, then run 200 framed commands with random outputs
// (binary bytes, 10 KB lines, no trailing newline, exit codes 0-255) while a background
// loop writes to /dev/kmsg at a level the console prints, and get every output and
// status exactly right. It runs on both transports: the virtio-serial channel (the
// default) and the console protocol (base64 + MD5, spliced kernel lines, retransmits),
// which is what a VM without the channel gets.
func TestFramedCommandsExactUnderKernelNoise(t *testing.T) {
	img := mini(t, images.MiniSpec{})
	for _, transport := range []string{shell.TransportChannel, shell.TransportConsole} {
		t.Run(transport, func(t *testing.T) {
			prof := shell.Mini
			prof.QuietKernel = false // the noise must reach the console for this test to mean anything
			l := start(t, "framed-noise-"+transport, miniImage(img, prof), func(s *vm.Spec) { s.NoChannel = transport == shell.TransportConsole })
			ctx, cancel := context.WithTimeout(context.Background(), scaled(15*time.Minute))
			defer cancel()
			sh, err := l.Login(ctx)
			require.NoError(t, err)
			require.Equal(t, 0, sh.UID())
			require.Equal(t, shell.Su, sh.Attempts[len(sh.Attempts)-1].Method)
			require.Equal(t, transport, sh.Transport(), "channel: %s", sh.ChannelStatus())

			_, err = sh.Run(ctx, `(i=0; while :; do echo "<3>bootlab-noise $i: the kernel talks over your output" > /dev/kmsg; i=$((i+1)); sleep 0.02; done) </dev/null >/dev/null 2>&1 &`)
			require.NoError(t, err)

			rng := rand.New(rand.NewSource(time.Now().UnixNano()))
			began := time.Now()
			for i := 0; i < 200; i++ {
				var out []byte
				switch i % 4 {
				case 0: // binary, any byte
					out = make([]byte, rng.Intn(3000))
					rng.Read(out)
				case 1: // one 10 KB line, no trailing newline
					out = bytes.Repeat([]byte{byte('a' + rng.Intn(26))}, 10*1024)
				case 2: // text with CRs and escapes
					out = []byte(fmt.Sprintf("line %d\r\n\x1b[31mred\x1b[0m\rover\n", i))
				default: // nothing
				}
				status := rng.Intn(256)
				cmd := fmt.Sprintf("printf %%s '%s' | base64 -d; (exit %d)", base64.StdEncoding.EncodeToString(out), status)
				res, err := sh.Run(ctx, cmd, shell.AllowFail(), shell.Timeout(scaled(2*time.Minute)))
				require.NoError(t, err, "command %d", i)
				require.Equal(t, status, res.ExitStatus, "command %d", i)
				require.True(t, bytes.Equal(out, res.Output), "command %d: %d bytes back, %d expected", i, len(res.Output), len(out))
			}
			took := time.Since(began)
			serial, err := os.ReadFile(filepath.Join(l.Dir(), vm.SerialLog))
			require.NoError(t, err)
			noisy := strings.Count(string(serial), "bootlab-noise")
			require.Greater(t, noisy, 50, "kernel noise reached the console during the commands")
			channel, err := os.ReadFile(filepath.Join(l.Dir(), vm.ChannelLog))
			if transport == shell.TransportChannel {
				require.NoError(t, err)
				require.NotContains(t, string(channel), "bootlab-noise", "nothing but framed output on the channel")
				require.Contains(t, string(channel), "red\x1b[0m\rover", "the outputs travelled on the channel")
			} else {
				require.ErrorIs(t, err, os.ErrNotExist, "no channel log without the port")
			}
			t.Logf("%s: 200 framed commands exact in %s with %d kernel lines on the console", transport, took.Round(time.Millisecond), noisy)
		})
	}
}

// TestRunRecordsAndShutdown checks what a normal run leaves behind and that a stop
// powers the guest off cleanly.
func TestRunRecordsAndShutdown(t *testing.T) {
	img := mini(t, images.MiniSpec{})
	// A disk the harness creates goes when the run closes (no 4 GiB images in notes or
	// CI uploads); a disk the caller brings by Path stays.
	brought := filepath.Join(t.TempDir(), "brought.img")
	require.NoError(t, os.WriteFile(brought, make([]byte, 1<<20), 0o644))
	l := start(t, "records", miniImage(img, shell.Mini), func(s *vm.Spec) {
		s.Disks = []vm.DiskSpec{{Name: "scratch.img", SizeMB: 8}, {Path: brought}}
	})
	_, err := os.Stat(filepath.Join(l.Dir(), "scratch.img"))
	require.NoError(t, err, "the harness created scratch.img in the run directory")
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	_, err = l.Login(ctx)
	require.NoError(t, err)
	res, err := l.Run(ctx, "uname -r")
	require.NoError(t, err)
	require.Equal(t, img.KernelVersion+"\n", string(res.Output))
	pid := l.Pid()
	stage, err := l.PowerOff(ctx)
	require.NoError(t, err)
	require.Equal(t, qemu.StopGuest, stage, "the guest powered itself off")
	require.NoError(t, l.Close(ctx, nil))
	require.False(t, l.Running(), "QEMU pid %d exited", pid)
	require.NoFileExists(t, filepath.Join(l.Dir(), "scratch.img"), "closing the run deletes the disks it created")
	require.FileExists(t, brought, "a disk given by Path is the caller's")

	m := metadata(t, l.Dir())
	require.Equal(t, runrec.Pass, m.Outcome)
	require.Equal(t, "kernel", m.Image.Kind)
	require.Len(t, m.Image.SHA256, 64)
	require.NotEmpty(t, m.QEMU.Argv)
	require.Contains(t, m.QEMU.Version, "QEMU emulator version")
	require.NotEmpty(t, m.Accel.Name)
	require.NotEmpty(t, m.Accel.Reason)
	require.NotNil(t, m.Shell, "metadata says how root was reached")
	require.Equal(t, shell.TransportChannel, m.Shell.Transport, m.Shell.ChannelStatus)
	require.Equal(t, "in use", m.Shell.ChannelStatus)
	require.Equal(t, string(shell.Su), m.Shell.Escalation)
	require.Zero(t, m.Shell.UID)
	for _, name := range []string{"spawn", "first_output", "login_prompt", "root_shell", "shutdown"} {
		_, ok := m.Milestone(name)
		require.True(t, ok, "milestone %s recorded", name)
	}
	for _, f := range []string{vm.SerialLog, vm.TranscriptLog, vm.HarnessLog, runrec.ReportFile} {
		st, err := os.Stat(filepath.Join(l.Dir(), f))
		require.NoError(t, err)
		require.Positive(t, st.Size(), f)
	}
	serial, _ := os.ReadFile(filepath.Join(l.Dir(), vm.SerialLog))
	require.NotContains(t, string(serial), "__blf ", "serial.log holds guest bytes only: no typed commands (echo is off)")
	transcript, _ := os.ReadFile(filepath.Join(l.Dir(), vm.TranscriptLog))
	require.Contains(t, string(transcript), "> \"__blf ", "the transcript holds what was typed")
	channel, _ := os.ReadFile(filepath.Join(l.Dir(), vm.ChannelLog))
	require.Contains(t, string(channel), img.KernelVersion+"\n", "channel.log holds the framed output")
}

// TestSilentGuestTimesOutWithSerialTail: a guest that boots and then prints nothing.
func TestSilentGuestTimesOutWithSerialTail(t *testing.T) {
	img := mini(t, images.MiniSpec{Version: "silent", Init: "#!/bin/sh\n. /etc/rc.mini\necho 'bootlab: going quiet now'\nexec sleep 100000\n"})
	l := start(t, "silent", miniImage(img, shell.Mini), func(s *vm.Spec) { s.Timeouts.Login = quietLogin })
	// The login's deadline starts when Login is called. Called at spawn, the boot ate
	// into the silence it is meant to time out on, and at load 20 on two cores the boot
	// alone took longer: the error came before the guest's last words.
	lastWords(t, l, "going quiet now")
	began := time.Now()
	_, err := l.Login(context.Background())
	var te *console.TimeoutError
	require.True(t, errors.As(err, &te), "got %v", err)
	require.Contains(t, err.Error(), "going quiet now", "the error carries the serial tail")
	require.GreaterOrEqual(t, time.Since(began), quietLogin, "the whole silence is waited out")
	require.NotEmpty(t, l.Diagnostics(), "a diagnostic was written")
	body, rerr := os.ReadFile(l.Diagnostics()[0])
	require.NoError(t, rerr)
	require.Contains(t, string(body), "going quiet now")
	require.Contains(t, string(body), "running (pid")
}

// quietLogin is the login timeout of the tests whose guest never offers a login: the
// silence waited for does not stretch with the machine's load (ScaledQuiet), what
// bounds the machine's own work does (scaled).
var quietLogin = labtest.ScaledQuiet(20 * time.Second)

// lastWords waits, for as long as a boot may take on this machine, until the console
// shows text: the guest is up and from then on says nothing that counts.
func lastWords(t *testing.T, l *lab.Lab, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	_, _, err := l.ExpectConsole(ctx, 0, regexp.MustCompile(regexp.QuoteMeta(text)))
	require.NoError(t, err, "the guest booted to its last words")
}

// TestLoginPromptNeverComes: garbage with escape sequences in a loop, never `login:`.
func TestLoginPromptNeverComes(t *testing.T) {
	img := mini(t, images.MiniSpec{Version: "garbage", Init: "#!/bin/sh\n. /etc/rc.mini\nwhile :; do printf '\\033[31mgarbage\\033[0m \\033]0;title\\007 no prompt here\\r\\n'; sleep 0.1; done\n"})
	l := start(t, "garbage", miniImage(img, shell.Mini), func(s *vm.Spec) { s.Timeouts.Login = quietLogin })
	lastWords(t, l, "no prompt here")
	_, err := l.Login(context.Background())
	var te *console.TimeoutError
	require.True(t, errors.As(err, &te), "got %v", err)
	require.Contains(t, err.Error(), "garbage  no prompt here", "escape sequences are gone from the tail")
	// The wait's own clock, not the test's: the diagnostics written after it take as
	// long as the machine's load makes them. The wait loop looks at its deadline at
	// least once a second.
	require.Greater(t, te.After, quietLogin-time.Second, "the deadline is the login timeout")
	require.Less(t, te.After, quietLogin+scaled(2*time.Second), "a chatty console does not extend the deadline")
}

// TestQEMUExitsEarly: a kernel file QEMU cannot load; the error has its status and words,
// and the run is recorded as an environment error (QEMU never ran a guest), not a fail.
func TestQEMUExitsEarly(t *testing.T) {
	vmgate.VM(t)
	bad := filepath.Join(t.TempDir(), "not-a-kernel")
	require.NoError(t, os.WriteFile(bad, bytes.Repeat([]byte("junk"), 1000), 0o644))
	img := vm.Image{Name: "bad", Kernel: bad, Profile: shell.Mini}
	ctx, cancel := context.WithTimeout(context.Background(), scaled(time.Minute))
	defer cancel()
	l, err := lab.Start(ctx, labtest.Config(), lab.Slug("bad-kernel"), lab.Machine(vm.Spec{Image: img, Accel: qemu.AccelTCG}))
	require.Error(t, err)
	var se *qemu.StartError
	require.True(t, errors.As(err, &se), "got %v", err)
	require.Contains(t, se.ExitStatus, "exit status")
	require.NotEmpty(t, strings.TrimSpace(se.Stderr), "QEMU's own words are in the error")
	require.Nil(t, l, "a failed start returns no lab")
	var ls *lab.StartError
	require.ErrorAs(t, err, &ls, "the error names the run directory that recorded it")
	m := metadata(t, ls.Dir)
	require.Equal(t, runrec.Error, m.Outcome)
	require.Contains(t, m.Error, "QEMU failed to start")
}

// TestMissingImage: a clear error before anything starts.
func TestMissingImage(t *testing.T) {
	vmgate.VM(t)
	img := vm.Image{Name: "missing", Kernel: "/nonexistent/vmlinuz", Profile: shell.Mini}
	_, err := lab.Start(context.Background(), labtest.Config(), lab.Slug("missing"), lab.Machine(vm.Spec{Image: img, Accel: qemu.AccelTCG}))
	require.ErrorContains(t, err, "/nonexistent/vmlinuz: does not exist")
}

// TestShellDeathOnTheMiniVM is issue 18's watchdog on the real guest (busybox ash under
// `su -`), on both transports: a command that ends the root shell fails at once with
// what happened, not after the command's timeout (5 minutes in `bootlab run`): `exit 3`,
// `kill -9 $$`, `exec true` and `reboot -f`.
func TestShellDeathOnTheMiniVM(t *testing.T) {
	img := mini(t, images.MiniSpec{})
	for _, transport := range []string{shell.TransportChannel, shell.TransportConsole} {
		for i, c := range []struct{ cmd, what string }{
			{"exit 3", "the root shell exited with status 3"},
			{"kill -9 $$", "the prompt of the shell it was started from came back"},
			{"exec true", "the prompt of the shell it was started from came back"},
			// QEMU runs with -no-reboot: the kernel's banner names the reboot and QEMU
			// exits right after it. On the console the banner is seen first; on the
			// channel the closed line usually wins (both within ~15 ms).
			{"reboot -f", `the guest is rebooting or powering off|serial line closed \(QEMU exited\?\)`},
		} {
			t.Run(transport+"/"+c.cmd, func(t *testing.T) {
				l := start(t, fmt.Sprintf("shell-death-%s-%d", transport, i), miniImage(img, shell.Mini), func(s *vm.Spec) { s.NoChannel = transport == shell.TransportConsole })
				ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
				defer cancel()
				sh, err := l.Login(ctx)
				require.NoError(t, err)
				require.Equal(t, transport, sh.Transport(), sh.ChannelStatus())
				began := time.Now()
				_, err = sh.Run(ctx, c.cmd)
				took := time.Since(began)
				t.Logf("%s on %s: reported after %s: %v", c.cmd, transport, took.Round(time.Millisecond), err)
				require.Error(t, err)
				require.Regexp(t, c.what, err.Error())
				if c.cmd != "reboot -f" {
					var gone *shell.ShellGoneError
					require.ErrorAs(t, err, &gone)
				}
				require.Less(t, took, scaled(30*time.Second), "found out by the watchdog, not a timeout")
			})
		}
	}
}

// TestReadOnlyTmpOnTheMiniVM: on the console protocol, a /tmp that turns read-only (here a
// read-only tmpfs mounted over it) used to hang every later command for its timeout
// (`sh: can't create /tmp/.bl.83.o`); the framing function now moves its output file to
// another writable directory and the commands go on.
func TestReadOnlyTmpOnTheMiniVM(t *testing.T) {
	img := mini(t, images.MiniSpec{})
	l := start(t, "readonly-tmp", miniImage(img, shell.Mini), func(s *vm.Spec) { s.NoChannel = true })
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	sh, err := l.Login(ctx)
	require.NoError(t, err)
	require.Equal(t, shell.TransportConsole, sh.Transport())
	_, err = sh.Run(ctx, "mount -t tmpfs -o ro tmpfs /tmp")
	require.NoError(t, err)
	res, err := sh.Run(ctx, "echo still framed; touch /tmp/x 2>&1", shell.AllowFail(), shell.Timeout(scaled(30*time.Second)))
	require.NoError(t, err)
	require.Contains(t, string(res.Output), "still framed\n")
	require.Contains(t, string(res.Output), "Read-only file system", "/tmp really is read-only")
	res, err = sh.Run(ctx, `echo "$__bd"`, shell.Timeout(scaled(30*time.Second)))
	require.NoError(t, err)
	require.Regexp(t, `^/(dev/shm|run|var/tmp|root)\n$`, string(res.Output), "the output file moved out of /tmp")
}
