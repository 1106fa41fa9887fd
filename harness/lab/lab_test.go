package lab

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

func fakeSpec(t *testing.T, b fakeguest.Behaviour) Options {
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	require.NoError(t, os.WriteFile(kernel, []byte("not really a kernel"), 0o644))
	spec := vm.Spec{Image: vm.Image{Name: "fake", Kernel: kernel, Profile: shell.Mini}, Accel: qemu.AccelTCG,
		Launcher: fakeguest.Launcher{Behaviour: b}, Binary: "fake-qemu", Timeouts: vm.BaseTimeouts()}
	spec.Timeouts.Login = 3 * time.Second
	spec.Timeouts.Step = 2 * time.Second
	spec.Timeouts.Stop = qemu.StopTimeouts{Guest: time.Second, Powerdown: 100 * time.Millisecond, Quit: 100 * time.Millisecond, Term: time.Second, Kill: time.Second}
	return Options{Slug: "fake", VM: spec, conf: config.Config{Notes: t.TempDir(), TimeoutScale: 1}}
}

// startFake starts o with the configuration fakeSpec put in it, as Start would.
func startFake(ctx context.Context, o Options) (*Lab, error) { return Start(ctx, o.conf, With(o)) }

func readMeta(t *testing.T, dir string) runrec.Metadata {
	b, err := os.ReadFile(filepath.Join(dir, runrec.MetadataFile))
	require.NoError(t, err)
	require.True(t, json.Valid(b))
	m, err := runrec.ReadMetadata(dir)
	require.NoError(t, err)
	return m
}

func TestPassingRunLeavesCompleteRecords(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "getty"})
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	_, err = l.Login(context.Background())
	require.NoError(t, err)
	r, err := l.Run(context.Background(), "echo hi")
	require.NoError(t, err)
	require.Equal(t, "hi\n", string(r.Output))
	require.NoError(t, l.Close(context.Background(), nil))

	m := readMeta(t, l.Dir())
	require.Equal(t, runrec.Pass, m.Outcome)
	require.Equal(t, "kernel", m.Image.Kind)
	for _, name := range []string{"spawn", "first_output", "login_prompt", "root_shell", "shutdown"} {
		_, ok := m.Milestone(name)
		require.True(t, ok, "milestone %s", name)
	}
	var cat []string
	for _, a := range m.Artefacts {
		cat = append(cat, a.Path)
	}
	require.Contains(t, cat, "report.html", "the report joins the artefact catalogue")
	require.Contains(t, cat, "serial.log")
	ledger, skipped, err := runrec.ReadLedger(runrec.DefaultLedger(cfg.conf.Notes))
	require.NoError(t, err)
	require.Zero(t, skipped)
	require.Len(t, ledger, 1)
	require.Equal(t, l.Dir(), ledger[0].Dir)
}

func TestLoginFailureWritesDiagnostic(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "silent", Boot: "last words of a stuck guest\n"})
	cfg.VM.Timeouts.Login = 300 * time.Millisecond
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	_, err = l.Login(context.Background())
	require.Error(t, err)
	require.Len(t, l.Diagnostics(), 1)
	body, rerr := os.ReadFile(l.Diagnostics()[0])
	require.NoError(t, rerr)
	require.Contains(t, string(body), "last words of a stuck guest")
	require.Contains(t, string(body), "logging in and becoming root")
	require.NoError(t, l.Close(context.Background(), err))
	m := readMeta(t, l.Dir())
	require.Equal(t, runrec.Fail, m.Outcome)
	require.Contains(t, m.Error, "timed out")
}

func TestInterruptMarksRunsInterrupted(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"})
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	_, err = l.Login(context.Background())
	require.NoError(t, err)
	InterruptAll("SIGINT")
	require.False(t, l.vm.Running(), "the guest process was stopped")
	m := readMeta(t, l.Dir())
	require.Equal(t, runrec.Interrupted, m.Outcome)
	require.Contains(t, m.Error, "interrupted by SIGINT")
	require.NoError(t, l.Close(context.Background(), nil), "a second Close is harmless")
}

func TestUnwritableNotesFailsBeforeBoot(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "getty"})
	cfg.conf.Notes = "/proc/bootlab-cannot-write-here"
	l, err := startFake(context.Background(), cfg)
	require.Error(t, err)
	require.Nil(t, l, "nothing was started")
	require.Contains(t, err.Error(), "before booting anything")
}

// A VM that does not start leaves no half-built Lab: Start returns nil and an error
// naming the run directory, where the failure is already recorded (outcome, a
// diagnostic, the ledger line), so no method of Lab ever has to ask whether it has a VM.
func TestFailedStartReturnsNoLab(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "getty"})
	cfg.VM.Launcher, cfg.VM.Binary = nil, "/nonexistent/qemu-system-x86_64"
	l, err := startFake(context.Background(), cfg)
	require.Error(t, err)
	require.Nil(t, l, "a failed start returns no lab")
	var se *StartError
	require.ErrorAs(t, err, &se)
	require.Contains(t, err.Error(), "/nonexistent/qemu-system-x86_64")
	m := readMeta(t, se.Dir)
	require.Equal(t, runrec.Fail, m.Outcome)
	diags, _ := filepath.Glob(filepath.Join(se.Dir, runrec.DiagnosticsDir, "*qemu-start*"))
	require.NotEmpty(t, diags, "the failure left a diagnostic")
	ledger, _, err := runrec.ReadLedger(runrec.DefaultLedger(cfg.conf.Notes))
	require.NoError(t, err)
	require.Len(t, ledger, 1, "the failed run is in the ledger")
}

func TestConsoleSocketAttach(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"})
	l, err := startFake(context.Background(), cfg)
	require.NoError(t, err)
	defer l.Close(context.Background(), nil)
	_, err = l.Login(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	link, err := l.ServeConsole(ctx)
	require.NoError(t, err)
	target, err := os.Readlink(link)
	require.NoError(t, err)
	st, err := os.Stat(filepath.Dir(target))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "the socket's directory is private")
	c, err := dialUnix(target)
	require.NoError(t, err)
	defer c.Close()
	pos := l.vm.Console().Pos()
	_, err = c.Write([]byte("typed-through-the-socket\n"))
	require.NoError(t, err)
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	defer wcancel()
	// The fake guest answers an unknown command with "not found": typed input arrived.
	_, err = l.vm.Shell().WaitConsole(wctx, pos, mustRe(`typed-through-the-socket: not found`))
	require.NoError(t, err)
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Read(buf)
	require.NoError(t, err)
	require.Positive(t, n, "the attached client sees the guest's output")
}

func dialUnix(path string) (*net.UnixConn, error) {
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
}

func mustRe(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// Close deletes exactly the disk images vm.VM created: named ones, unnamed ones by
// their default name, never a disk the caller brought by Path.
func TestCreatedDisksAreTheOnesWithoutPath(t *testing.T) {
	got := createdDisks("/run/x", []vm.DiskSpec{
		{Name: "disk0.img", SizeMB: 4096},
		{Path: "/images/shared.img"},
		{SizeMB: 8},
	})
	require.Equal(t, []string{"/run/x/disk0.img", "/run/x/disk2.img"}, got)
}

// Every VM default is derived from the one Config in one place (vmDefaults), and what
// the spec says itself is kept: a login bound of its own keeps the scaled rest.
func TestVMDefaultsComeFromTheConfig(t *testing.T) {
	cfg := config.Config{Notes: "/n", Cache: "/c", Accel: "tcg", QEMU: "qemu-x", TimeoutScale: 2}
	base := vm.BaseTimeouts()
	got := vmDefaults(cfg, vm.Spec{Image: vm.Image{Kernel: "/k"}, Timeouts: vm.Timeouts{Login: time.Second}})
	require.Equal(t, "tcg", got.Accel)
	require.Equal(t, "qemu-x", got.Binary)
	require.Equal(t, "/k", got.ProbeKernel)
	require.Equal(t, filepath.Join("/c", "accel-probe.json"), got.ProbeCache)
	require.Equal(t, time.Second, got.Timeouts.Login, "the spec's own bound")
	require.Equal(t, 2*base.Command, got.Timeouts.Command, "the rest scaled by the config")
	require.Equal(t, 2*base.Stop.Kill, got.Timeouts.Stop.Kill)
	require.Equal(t, 2.0, got.Timeouts.Scale)

	kept := vmDefaults(cfg, vm.Spec{Accel: "kvm", Binary: "mine", ProbeKernel: "/p", ProbeCache: "/pc"})
	require.Equal(t, []string{"kvm", "mine", "/p", "/pc"}, []string{kept.Accel, kept.Binary, kept.ProbeKernel, kept.ProbeCache})
}

// blockingLauncher holds the VM's start until released, then fails it.
type blockingLauncher struct{ launched, release chan struct{} }

func (b blockingLauncher) Launch(ctx context.Context, binary string, args []string, serial *os.File, stderr io.Writer) (qemu.Process, error) {
	close(b.launched)
	<-b.release
	return nil, errors.New("released")
}

// An interruption while the VM is still starting (Ctrl-C during the KVM probe or an
// ISO's hashing) records the run as interrupted, though no Lab exists yet to close.
func TestInterruptWhileStartingRecordsTheRun(t *testing.T) {
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "getty"})
	b := blockingLauncher{launched: make(chan struct{}), release: make(chan struct{})}
	cfg.VM.Launcher = b
	type result struct {
		l   *Lab
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := startFake(context.Background(), cfg)
		done <- result{l, err}
	}()
	<-b.launched
	InterruptAll("SIGINT")
	close(b.release)
	r := <-done
	require.Nil(t, r.l)
	var se *StartError
	require.ErrorAs(t, r.err, &se)
	m := readMeta(t, se.Dir)
	require.Equal(t, runrec.Interrupted, m.Outcome, "the interruption, not the failure after it")
	require.Contains(t, m.Error, "interrupted by SIGINT while starting the VM")
}
