package scenarios

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/keys"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/verify"
	"github.com/bootlab/bootlab/harness/vm"
)

// flagCaptures is bootlab run's --captures for the suite: when each run takes the boot
// evidence (journal, units, network, disks) before its VM stops.
var flagCaptures = flag.String("captures", "always", "take boot evidence always, on failure, or none")

// captureMode is -captures, checked; a bad value fails the test that boots.
func captureMode(t *testing.T) lab.CaptureMode {
	m, err := lab.ParseCaptureMode(*flagCaptures)
	require.NoError(t, err, "-captures")
	return m
}

func scaled(d time.Duration) time.Duration { return time.Duration(float64(d) * vm.ScaleFromEnv()) }

// vmSlots lets two TCG guests run at once: each is single-threaded, the machine has two
// cores, and the scenarios spend most of their time waiting on guests.
var vmSlots = make(chan struct{}, 2)

// slot runs the test in parallel with others but with at most two VMs up at a time.
func slot(t *testing.T) {
	t.Helper()
	t.Parallel()
	vmSlots <- struct{}{}
	t.Cleanup(func() { <-vmSlots })
}

type builtFixture struct {
	img vm.Image
	iso *images.ISO
	key *keys.Pair
	err error
}

var (
	fixtureMu    sync.Mutex
	fixtureCache = map[string]*builtFixture{}
)

// fixture builds (once per process and variant) the fixture ISO with bootlab's root key.
// With -iso the given ISO is used for the standard variant instead, with -profile's
// image profile.
func fixture(t *testing.T, spec images.FixtureSpec) (vm.Image, *images.ISO, *keys.Pair) {
	t.Helper()
	id := fmt.Sprintf("%+v", spec)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	b, ok := fixtureCache[id]
	if !ok {
		b = &builtFixture{}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		if *flagISO != "" && spec.BreakUnit == "" && spec.RootKey == "" {
			b.key, b.err = lab.RootKey()
			b.img = vm.Image{Name: "iso", ISO: *flagISO, Profile: suiteProfile()}
			b.iso = &images.ISO{Path: *flagISO}
		} else {
			b.img, b.iso, b.key, b.err = lab.FixtureImage(ctx, spec)
		}
		if b.err == nil {
			// -boot/-entry (default auto): FixtureImage supplies the ISO's own kernel,
			// so the fixture boots directly (faster under TCG, docs/benchmarks.md);
			// -boot firmware boots its CD through ISOLINUX.
			_, b.err = lab.ResolveISOBoot(ctx, &b.img, *flagBoot, *flagEntry)
		}
		fixtureCache[id] = b
	}
	require.NoError(t, b.err, "building the fixture ISO (needs mmdebstrap, squashfs-tools, xorriso, isolinux: make deps)")
	return b.img, b.iso, b.key
}

// bootOpts describe a scenario VM.
type bootOpts struct {
	slug    string
	fixture images.FixtureSpec
	disks   []vm.DiskSpec
	noNet   bool
}

// boot starts a fixture VM in its own run directory and logs in as root. The VM is
// stopped and the run recorded when the test ends, with the test's verdict; with
// -boot-image-debug a failed VM is kept for `bootlab attach` first.
func boot(t *testing.T, o bootOpts) (*lab.Lab, *keys.Pair) {
	t.Helper()
	img, _, key := fixture(t, o.fixture)
	l := startLab(t, o.slug, vm.Spec{Image: img, Disks: o.disks, Net: !o.noNet, SSH: !o.noNet, MemoryMB: 1024}, key.Fingerprint)
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	_, err := l.Login(ctx)
	require.NoError(t, err, "logging in to the fixture (run directory %s)", l.Dir())
	pauseAt(t.Name(), l, "login")
	return l, key
}

// startLab starts a VM in a lab tied to t.
func startLab(t *testing.T, slug string, spec vm.Spec, keyFP string) *lab.Lab {
	t.Helper()
	spec.Accel = *flagAccel
	spec.ProbeCache = lab.ProbeCache()
	if spec.ProbeKernel == "" {
		spec.ProbeKernel = probeKernel(t)
	}
	spec.Timeouts = vm.DefaultTimeouts()
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	l, err := lab.Start(ctx, lab.Config{Slug: slug, Notes: notesRoot(), VM: spec, RootKeyFingerprint: keyFP, KeepDisks: *flagKeep, Captures: captureMode(t)})
	if l != nil {
		t.Logf("run directory: %s", l.Dir())
	}
	require.NoError(t, err, "starting the VM")
	began := time.Now()
	t.Cleanup(func() { finish(t, l, began) })
	return l
}

// probeKernel is a kernel for the KVM probe (the mini image's; built in seconds).
func probeKernel(t *testing.T) string {
	m, err := images.BuildMini(context.Background(), images.MiniSpec{})
	require.NoError(t, err, "building the mini image for the accelerator probe")
	return m.Kernel
}

func finish(t *testing.T, l *lab.Lab, began time.Time) {
	var verdict error
	outcome := runrec.Pass
	if t.Failed() {
		verdict = errors.New("scenario " + t.Name() + " failed")
		outcome = runrec.Fail
	}
	keepIfFailed(t, l)
	l.Scenario(t.Name(), outcome, verdict, time.Since(began))
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	if err := l.Close(ctx, verdict); err != nil {
		t.Errorf("closing the run: %v", err)
	}
	if l.VM != nil && l.VM.Running() {
		t.Errorf("QEMU still running after Close")
	}
	if !t.Failed() && !*flagKeep {
		// Disk images are the bulk of a run directory; a passing run does not need them.
		for _, d := range l.VM.Spec.Disks {
			if d.Path == "" {
				os.Remove(filepath.Join(l.Dir(), diskName(d)))
			}
		}
	}
}

func diskName(d vm.DiskSpec) string { return d.Name }

// pauseMu lets one VM at a time wait for a person: parallel scenarios that fail
// together queue up, each with its own message, instead of racing for the Enter key.
var pauseMu sync.Mutex

// debugPause keeps a scenario's VM for a person exactly as `bootlab run --debug` does
// (lab.DebugPause: captures, console socket, capture --running). The message and the
// Enter key use the controlling terminal, since go test gives the test binary no stdin
// and, without -v, shows its output only at the end; without a terminal the VM waits
// -debug-wait.
func debugPause(l *lab.Lab, why string) {
	pauseMu.Lock()
	defer pauseMu.Unlock()
	o := lab.PauseOptions{Why: why, Out: os.Stderr, Wait: *flagDebugWait}
	if tty := lab.ControllingTerminal(); tty != nil {
		defer tty.Close()
		o.Enter = tty
		if !isTerminal(os.Stderr) {
			o.Out = io.MultiWriter(os.Stderr, tty)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Wait+scaled(10*time.Minute))
	defer cancel()
	l.DebugPause(ctx, o)
}

// keepIfFailed keeps a failed scenario's VM for a person with -boot-image-debug.
func keepIfFailed(t *testing.T, l *lab.Lab) {
	if t.Failed() && *flagDebug && l.VM != nil && l.VM.Running() {
		debugPause(l, t.Name()+" failed")
	}
}

// pauseAt pauses a scenario's VM at a stage named by -pause-after (login, storage,
// network), whether or not the scenario goes on to fail.
func pauseAt(name string, l *lab.Lab, stage string) {
	if *flagPauseAfter == stage {
		debugPause(l, name+": pause after "+stage)
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// disk makes a disk spec; virtio unless bus says otherwise.
func disk(name string, mb int) vm.DiskSpec { return vm.DiskSpec{Name: name, SizeMB: mb} }

// checks returns the shared pre-nixos checks for a lab.
func checks(l *lab.Lab, key *keys.Pair, t *testing.T) *verify.PreNixos {
	return &verify.PreNixos{Lab: l, Key: key, Out: testWriter{t},
		Pause:          func(stage string) { pauseAt(t.Name(), l, stage) },
		StorageTimeout: scaled(10 * time.Minute), NetworkTimeout: scaled(5 * time.Minute), SSHTimeout: scaled(5 * time.Minute)}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// run runs a framed command that must succeed and returns its output.
func run(t *testing.T, l *lab.Lab, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	r, err := l.Run(ctx, cmd)
	require.NoError(t, err, "running %q (run directory %s)", cmd, l.Dir())
	return string(r.Output)
}

// status runs a command and returns output and exit status, whatever it is.
func runStatus(t *testing.T, l *lab.Lab, cmd string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	r, err := l.Run(ctx, cmd, shell.AllowFail())
	require.NoError(t, err, "running %q (run directory %s)", cmd, l.Dir())
	return string(r.Output), r.ExitStatus
}

// hostTool fails the test, saying what to install, when a host command is missing.
func hostTool(t *testing.T, name, pkg string) {
	t.Helper()
	require.NoError(t, vm.HostTool(name, pkg))
}

// hostRun runs a host command that must succeed.
func hostRun(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// --- the shared standard VM: scenarios 1-4 share one boot ---------------------------

// Scenarios 1 (clean disk), 2 (network + SSH), 3 (sshd independence) and 4 (embedded
// key) all observe the same thing, a fixture booted on one blank disk, from different
// sides; none changes the VM, so one boot proves all four without weakening any.
var (
	sharedOnce sync.Once
	shared     *sharedVM
)

type sharedVM struct {
	l      *lab.Lab
	key    *keys.Pair
	iso    *images.ISO
	checks *verify.PreNixos
	err    error // the checks' result, asserted by each scenario
	mu     sync.Mutex
	failed []string // scenarios that failed on it
}

// standard boots the shared VM once and runs the pre-nixos checks on it.
func standard(t *testing.T) *sharedVM {
	t.Helper()
	sharedOnce.Do(func() {
		img, iso, key := fixture(t, images.FixtureSpec{})
		spec := vm.Spec{Image: img, Disks: []vm.DiskSpec{disk("disk0.img", 4096)}, Net: true, SSH: true, MemoryMB: 1024,
			Accel: *flagAccel, ProbeCache: lab.ProbeCache(), ProbeKernel: probeKernel(t), Timeouts: vm.DefaultTimeouts()}
		ctx, cancel := context.WithTimeout(context.Background(), scaled(20*time.Minute))
		defer cancel()
		s := &sharedVM{key: key, iso: iso}
		shared = s
		s.l, s.err = lab.Start(ctx, lab.Config{Slug: "standard", Notes: notesRoot(), VM: spec, RootKeyFingerprint: key.Fingerprint, KeepDisks: *flagKeep, Captures: captureMode(t)})
		if s.err != nil {
			return
		}
		if _, s.err = s.l.Login(ctx); s.err != nil {
			return
		}
		pauseAt("the shared VM", s.l, "login")
		s.checks = checks(s.l, key, t)
		s.err = s.checks.Run(ctx)
	})
	require.NotNil(t, shared, "the shared VM was not created")
	if shared.l != nil {
		t.Logf("shared run directory: %s", shared.l.Dir())
	}
	t.Cleanup(func() {
		if t.Failed() {
			shared.mu.Lock()
			shared.failed = append(shared.failed, t.Name())
			shared.mu.Unlock()
		}
		if shared.l != nil {
			o := runrec.Pass
			if t.Failed() {
				o = runrec.Fail
			}
			shared.l.Scenario(t.Name(), o, nil, 0)
		}
	})
	return shared
}

func closeShared() {
	if shared == nil || shared.l == nil {
		return
	}
	var verdict error
	if len(shared.failed) > 0 || shared.err != nil {
		verdict = errors.Join(errors.New("a scenario on the shared VM failed"), shared.err)
		// The shared VM outlives each scenario on it, so it is kept once, after the
		// last of them, naming every one that failed.
		if *flagDebug && shared.l.VM != nil && shared.l.VM.Running() {
			debugPause(shared.l, "the shared VM ("+strings.Join(shared.failed, ", ")+") failed")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_ = shared.l.Close(ctx, verdict)
}
