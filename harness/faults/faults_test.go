// Package faults injects the failures unattended nightly runs meet and proves, for each,
// the same four things: the error names the cause; serial.log, transcript.log and
// harness.log are complete up to the fault; metadata.json is valid and records the
// outcome; and no QEMU of the run is left (by the pid in qemu.pid and by scanning /proc
// for the run's QEMU name).
package faults

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

var soak = flag.Int("soak", 3, "boot -> root -> command -> shutdown cycles in TestSoak (make soak uses 100)")

func TestMain(m *testing.M) {
	flag.Parse()
	if err := labtest.CheckFlags(); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(2)
	}
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

var scaled = labtest.Scaled

func miniSpec(t testing.TB, spec images.MiniSpec) vm.Spec {
	t.Helper()
	vmgate.VM(t)
	s, err := buildMiniSpec(spec)
	require.NoError(t, err)
	return s
}

func buildMiniSpec(spec images.MiniSpec) (vm.Spec, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, _, err := lab.MiniImage(ctx, labtest.Cache(), spec)
	if err != nil {
		return vm.Spec{}, err
	}
	s := vm.Spec{Image: img, MemoryMB: 256}
	s.Timeouts.Login = scaled(2 * time.Minute)
	return s, nil
}

// startMini boots spec for the test through labtest.StartT (closed, recorded and kept
// on failure with -boot-image-debug like every test VM); after the close, no QEMU of the
// run may be left, by pid or by name in /proc.
func startMini(t *testing.T, slug string, spec vm.Spec) *lab.Lab {
	t.Helper()
	var dir string
	t.Cleanup(func() { // registered first, so it runs after StartT's close
		if dir != "" {
			requireNoQEMU(t, dir)
		}
	})
	l := labtest.StartT(t, labtest.Slug(slug), labtest.Spec(func(s *vm.Spec) { *s = spec }))
	dir = l.Dir()
	return l
}

// requireNoQEMU checks the run's QEMU is gone: by pid, and by name in /proc.
func requireNoQEMU(t *testing.T, dir string) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(dir, vm.PIDFile)); err == nil {
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		require.NoError(t, err)
		require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "QEMU pid %d is gone", pid)
	}
	name := "bootlab-" + filepath.Base(dir)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("qemu-system")) && bytes.Contains(b, []byte(name+"\x00")) {
			t.Errorf("a QEMU of run %s is still running: %s", dir, p)
		}
	}
}

// requireRecords checks the four-point promise after a fault.
func requireRecords(t *testing.T, dir string, outcome runrec.Outcome, serialHas, transcriptHas string) runrec.Metadata {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, runrec.MetadataFile))
	require.NoError(t, err)
	require.True(t, json.Valid(b), "metadata.json is valid JSON")
	m, err := runrec.ReadMetadata(dir)
	require.NoError(t, err)
	require.Equal(t, outcome, m.Outcome, "metadata records the outcome (error: %s)", m.Error)
	serial, _ := os.ReadFile(filepath.Join(dir, vm.SerialLog))
	require.Contains(t, string(serial), serialHas, "serial.log is complete up to the fault")
	tr, _ := os.ReadFile(filepath.Join(dir, vm.TranscriptLog))
	require.Contains(t, string(tr), transcriptHas, "transcript.log is complete up to the fault")
	hl, _ := os.ReadFile(filepath.Join(dir, vm.HarnessLog))
	require.Contains(t, string(hl), "vm.milestone", "harness.log was written")
	requireNoQEMU(t, dir)
	return m
}

// 1. QEMU killed with SIGKILL in the middle of a framed command. Broken on purpose by
// making console.Expect ignore the closed line: the Run then hangs to its timeout.
func TestQEMUKilledMidCommand(t *testing.T) {
	l := startMini(t, "fault-sigkill", miniSpec(t, images.MiniSpec{}))
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	_, err := l.Login(ctx)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { _, err := l.Run(ctx, "echo started-long-command; sleep 120"); errc <- err }()
	// The command's first output on the frame channel: it is running in the guest.
	err = l.ExpectChannel(ctx, "started-long-command\n")
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, syscall.Kill(l.Pid(), syscall.SIGKILL))
	select {
	case err = <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("the framed command did not notice QEMU dying")
	}
	var ce *console.ClosedError
	require.True(t, errors.As(err, &ce), "got %v", err)
	require.Contains(t, err.Error(), "QEMU exited")
	require.NoError(t, l.Close(ctx, err))
	m := requireRecords(t, l.Dir(), runrec.Fail, "root@mini", "sleep 120")
	require.Contains(t, m.QEMU.ExitStatus, "killed by signal killed")
}

// 2. Guest kernel panic during a command (panic=-1 and -no-reboot make QEMU exit).
// Broken on purpose by booting without panic=-1: the guest hangs and Run times out.
func TestGuestKernelPanic(t *testing.T) {
	l := startMini(t, "fault-panic", miniSpec(t, images.MiniSpec{}))
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	_, err := l.Login(ctx)
	require.NoError(t, err)
	_, err = l.Run(ctx, "echo c > /proc/sysrq-trigger")
	var ce *console.ClosedError
	require.True(t, errors.As(err, &ce), "got %v", err)
	require.NoError(t, l.Close(ctx, err))
	requireRecords(t, l.Dir(), runrec.Fail, "Kernel panic", "sysrq-trigger")
}

// 5. sudo asks for a password the profile does not have (it offers the login password,
// which this sudo rejects): su is tried next; with a wrong
// root password too, the error lists both attempts with their transcripts. Broken on
// purpose by dropping Su from the profile: the first case then fails.
func TestSudoPasswordFallsBackToSu(t *testing.T) {
	fakeSudo := images.File{Mode: 0o755, Content: "#!/bin/sh\nprintf '[sudo] password for %s: ' \"$(id -un)\"\nread pw\necho\necho 'Sorry, try again.'\nexit 1\n"}
	spec := miniSpec(t, images.MiniSpec{Version: "fake-sudo", Files: map[string]images.File{"/usr/bin/sudo": fakeSudo}})
	prof := shell.Mini
	prof.Escalation = []shell.Method{shell.Sudo, shell.Su}
	spec.Image.Profile = prof
	l := startMini(t, "fault-sudo", spec)
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	sh, err := l.Login(ctx)
	require.NoError(t, err)
	require.Len(t, sh.Attempts, 2)
	// The profile's login password is tried for sudo (the usual case); this sudo wants
	// another one, so the attempt fails and su - is next.
	require.False(t, sh.Attempts[0].OK)
	require.Contains(t, sh.Attempts[0].Reason, "sudo -i rejected the password")
	require.Contains(t, sh.Attempts[0].Transcript, "[sudo] password for user")
	require.True(t, sh.Attempts[1].OK)
	require.Equal(t, shell.Su, sh.Attempts[1].Method)
	require.NoError(t, l.Close(ctx, nil))

	prof.RootPassword = "wrong"
	spec.Image.Profile = prof
	l2 := startMini(t, "fault-sudo-su", spec)
	_, err = l2.Login(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "sudo -i: sudo -i rejected the password")
	require.Contains(t, err.Error(), "su -: su - rejected the password")
	require.Contains(t, err.Error(), "[sudo] password for user", "the sudo transcript")
	require.NoError(t, l2.Close(ctx, err))
	requireRecords(t, l2.Dir(), runrec.Fail, "mini login:", "su -")
}

// 6. A hostfwd port taken by another listener: with a fixed port QEMU's own error comes
// back named; with an automatic port the harness picks another. Only loopback is used.
// Broken on purpose by removing the retry in qemu.Start: the collision then fails.
func TestHostfwdPortTaken(t *testing.T) {
	spec := miniSpec(t, images.MiniSpec{})
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	port := held.Addr().(*net.TCPAddr).Port
	files := func() qemu.RunFiles {
		dir, err := os.MkdirTemp("", "bl-fault-")
		require.NoError(t, err)
		t.Cleanup(func() { os.RemoveAll(dir) })
		f, err := qemu.NewRunFiles(dir)
		require.NoError(t, err)
		return f
	}
	// QEMU's stdio chardev needs a terminal, as in a real run.
	master, slave, err := console.OpenPTY()
	require.NoError(t, err)
	defer master.Close()
	defer slave.Close()
	go func() { _, _ = io.Copy(io.Discard, master) }()
	cfg := qemu.Config{Accel: qemu.AccelTCG, Kernel: spec.Image.Kernel, Initrd: spec.Image.Initrd, Append: spec.Image.Append, MemoryMB: 256, Net: true,
		Forwards: []qemu.Forward{{Name: "ssh", GuestPort: 22, HostPort: port}}}
	_, err = qemu.Start(context.Background(), cfg, qemu.StartOptions{Files: files(), Serial: slave, EarlyExitWindow: 3 * time.Second})
	var se *qemu.StartError
	require.True(t, errors.As(err, &se), "got %v", err)
	require.Contains(t, se.Reason, "port was already in use", "QEMU stderr: %s", se.Stderr)
	require.Contains(t, se.Stderr, strconv.Itoa(port))

	// Automatic ports: a collision would be retried; the held port is never chosen twice.
	cfg.Forwards[0].HostPort = 0
	m, err := qemu.Start(context.Background(), cfg, qemu.StartOptions{Files: files(), Serial: slave})
	require.NoError(t, err)
	defer m.Stop(context.Background(), nil, qemu.StopTimeouts{Quit: 5 * time.Second, Term: 5 * time.Second, Kill: 5 * time.Second})
	require.NotEqual(t, port, m.HostPort("ssh"))
	requireLoopbackOnly(t, m.HostPort("ssh"))
}

// requireLoopbackOnly reads the listening sockets from /proc/net/tcp: the port must be
// bound to 127.0.0.1 and never to 0.0.0.0. No traffic is sent anywhere.
func requireLoopbackOnly(t *testing.T, port int) {
	t.Helper()
	tcp, err := os.ReadFile("/proc/net/tcp")
	require.NoError(t, err)
	hexPort := fmt.Sprintf("%04X", port)
	var loop, any bool
	for _, line := range strings.Split(string(tcp), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" { // 0A: LISTEN
			continue
		}
		switch f[1] {
		case "0100007F:" + hexPort:
			loop = true
		case "00000000:" + hexPort:
			any = true
		}
	}
	require.True(t, loop, "forwarded port %d listens on 127.0.0.1", port)
	require.False(t, any, "forwarded port %d never listens on 0.0.0.0", port)
}

// 7. A disk image locked by another QEMU: a clear error naming the image. Broken on
// purpose by dropping the lock message match: the error then says only "exited".
func TestDiskImageLocked(t *testing.T) {
	spec := miniSpec(t, images.MiniSpec{})
	disk := filepath.Join(t.TempDir(), "shared.img")
	require.NoError(t, os.WriteFile(disk, nil, 0o644))
	require.NoError(t, os.Truncate(disk, 64<<20))
	spec.Disks = []vm.DiskSpec{{Path: disk}}
	first := startMini(t, "fault-lock-1", spec)
	_, err := lab.Start(context.Background(), labtest.Config(), lab.Slug("fault-lock-2"), lab.Machine(spec))
	require.Error(t, err)
	require.Contains(t, err.Error(), "locked by another process")
	require.Contains(t, err.Error(), disk)
	require.True(t, first.Running(), "the first VM is unaffected")
}

// withNotes is the test binary's configuration with its run directories under notes.
func withNotes(notes string) config.Config {
	c := labtest.Config()
	c.Notes = notes
	return c
}

// 9. Notes directory unwritable or full: a clear error before boot, no QEMU started.
// Broken on purpose by skipping runrec's preflight: the error then comes after boot.
func TestNotesUnusableFailsBeforeBoot(t *testing.T) {
	spec := miniSpec(t, images.MiniSpec{})
	notAdir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notAdir, []byte("x"), 0o644))
	_, err := lab.Start(context.Background(), withNotes(notAdir), lab.Slug("x"), lab.Machine(spec))
	require.ErrorContains(t, err, "before booting anything")

	full := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", full).CombinedOutput()
	require.NoError(t, err, "mounting a small tmpfs (needs root): %s", out)
	defer exec.Command("umount", full).Run()
	filler, _ := os.Create(filepath.Join(full, "filler"))
	_, _ = filler.Write(make([]byte, 512<<10)) // fills it: ENOSPC stops the write
	filler.Close()
	l, err := lab.Start(context.Background(), withNotes(full), lab.Slug("x"), lab.Machine(spec))
	require.Error(t, err)
	require.Nil(t, l)
	require.Contains(t, err.Error(), "before booting anything")
	pids, _ := filepath.Glob(filepath.Join(full, "*", vm.PIDFile))
	require.Empty(t, pids, "no QEMU was started")
}

// 10. A console flood during a large framed transfer: the output arrives exact (checked
// against the guest's own MD5) and the flood is in serial.log, on both transports. 2 MiB
// rather than 10: on the console transport the flood saturates the 115200-baud line the
// transfer shares, and 10 MiB takes over ten minutes under TCG here. Broken on purpose
// by accepting console frames without their checksum.
func TestConsoleFloodDuringTransfer(t *testing.T) {
	for _, transport := range []string{shell.TransportConsole, shell.TransportChannel} {
		t.Run(transport, func(t *testing.T) {
			spec := miniSpec(t, images.MiniSpec{})
			prof := shell.Mini
			prof.QuietKernel = false
			spec.Image.Profile = prof
			spec.NoChannel = transport == shell.TransportConsole
			l := startMini(t, "fault-flood-"+transport, spec)
			ctx, cancel := context.WithTimeout(context.Background(), scaled(10*time.Minute))
			defer cancel()
			sh, err := l.Login(ctx)
			require.NoError(t, err)
			require.Equal(t, transport, sh.Transport(), sh.ChannelStatus())
			const size = 2 << 20
			r, err := l.Run(ctx, fmt.Sprintf("head -c %d /dev/urandom > /tmp/big && md5sum /tmp/big", size))
			require.NoError(t, err)
			want := strings.Fields(string(r.Output))[0]
			_, err = l.Run(ctx, `(while :; do echo "flood: console noise line"; echo "<3>flood: kmsg noise" > /dev/kmsg; done > /dev/console 2>&1 &) </dev/null >/dev/null 2>&1`)
			require.NoError(t, err)
			began := time.Now()
			r, err = l.Run(ctx, "cat /tmp/big", shell.Timeout(scaled(8*time.Minute)))
			require.NoError(t, err)
			sum := md5.Sum(r.Output)
			require.Equal(t, want, hex.EncodeToString(sum[:]), "the transfer is exact despite the flood")
			t.Logf("%s: %d bytes in %s under a console flood", transport, len(r.Output), time.Since(began).Round(time.Millisecond))
			serial, _ := os.ReadFile(filepath.Join(l.Dir(), vm.SerialLog))
			require.Contains(t, string(serial), "flood: console noise line")
			require.Contains(t, string(serial), "flood: kmsg noise")
		})
	}
}

// 11. Soak: N boot -> root -> command -> shutdown cycles with zero harness failures
// (3 in make test, 100 in make soak).
func TestSoak(t *testing.T) {
	spec := miniSpec(t, images.MiniSpec{})
	failures := 0
	var total time.Duration
	for i := 0; i < *soak; i++ {
		began := time.Now()
		err := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), scaled(4*time.Minute))
			defer cancel()
			l, err := lab.Start(ctx, labtest.Config(), lab.Slug(fmt.Sprintf("soak-%03d", i)), lab.Machine(spec))
			if err != nil {
				return err
			}
			_, err = l.Login(ctx)
			if err == nil {
				var r []byte
				res, rerr := l.Run(ctx, "uname -r")
				r, err = res.Output, rerr
				if err == nil && len(r) == 0 {
					err = errors.New("empty uname -r")
				}
			}
			cerr := l.Close(ctx, err)
			requireNoQEMU(t, l.Dir())
			return errors.Join(err, cerr)
		}()
		d := time.Since(began)
		total += d
		if err != nil {
			failures++
			t.Errorf("cycle %d failed after %s: %v", i, d.Round(time.Millisecond), err)
		}
	}
	t.Logf("soak: %d cycles, %d harness failures (rate %.2f%%), mean cycle %s", *soak, failures, 100*float64(failures)/float64(*soak), (total / time.Duration(*soak)).Round(time.Millisecond))
}
