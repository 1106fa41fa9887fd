// Package labtest binds a lab (one booted VM and its run directory) to a Go test, the
// way hugelgupf/vmtest's StartT does: StartT boots it, t.Cleanup stops it and records
// the test's verdict, and with -boot-image-debug a failed test's VM is kept for a person
// first (-pause-after pauses at a stage whatever the verdict). Scenarios, the harness's
// VM tests and the fault tests all start their VMs here, so every one of them gets the
// same records and the same debug keep.
package labtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	bootcfg "github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

// Scaled multiplies d by the timeout scale (-timeout-scale, $BOOTLAB_TIMEOUT_SCALE) and
// by the load factor measured now (config.LoadFactor, the 1-minute load per core): a
// limit on how long the machine takes to do something (boot, start QEMU, answer) must
// stretch when other guests share its cores, or a healthy run fails at load 20.
func Scaled(d time.Duration) time.Duration {
	return time.Duration(float64(ScaledQuiet(d)) * bootcfg.LoadFactor())
}

// ScaledQuiet multiplies d by the timeout scale only: for a wait that is itself what a
// test is about (how long the harness waits for a guest that stays silent), which lasts
// as long on a loaded machine as on an idle one.
func ScaledQuiet(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Config().TimeoutScale)
}

// The debug flags, for every test package that boots through here.
var (
	flagDebug      = flag.Bool("boot-image-debug", false, "on failure keep the VM running for bootlab attach (until Enter on the terminal; -debug-wait without one)")
	flagPauseAfter = flag.String("pause-after", "", "pause each VM after this stage (login, storage or network) for bootlab attach; implies -boot-image-debug")
	flagDebugWait  = flag.Duration("debug-wait", 10*time.Minute, "with -boot-image-debug or -pause-after and no terminal: how long to keep the VM")
)

// Stages -pause-after accepts.
var Stages = []string{"login", "storage", "network"}

// Debug says when a test's VM is kept for a person and how the pause talks to them.
type Debug struct {
	// OnFailure keeps a failed test's VM (-boot-image-debug).
	OnFailure bool
	// PauseAfter pauses at this stage whatever the verdict (-pause-after).
	PauseAfter string
	// Wait bounds a pause without a terminal (-debug-wait).
	Wait time.Duration
	// Out and Enter override where the pause prints and what ends it (default: stderr
	// and the controlling terminal, if the test binary has one).
	Out   io.Writer
	Enter io.Reader
}

// FlagDebug is the debug configuration the command line asked for.
func FlagDebug() Debug {
	return Debug{OnFailure: *flagDebug || *flagPauseAfter != "", PauseAfter: *flagPauseAfter, Wait: *flagDebugWait}
}

// CheckFlags rejects debug flags that cannot work; TestMain calls it after flag.Parse
// and exits 2 on an error, before any VM boots.
func CheckFlags() error {
	if err := checkFixtureFlags(); err != nil {
		return err
	}
	if *flagPauseAfter != "" && !validStage(*flagPauseAfter) {
		return fmt.Errorf("-pause-after must be one of %s, not %q", strings.Join(Stages, ", "), *flagPauseAfter)
	}
	if *flagDebugWait <= 0 {
		return fmt.Errorf("-debug-wait must be positive, not %s", *flagDebugWait)
	}
	// -accel and -timeout-scale laid over BOOTLAB_*: config's one check.
	return Config().Validate()
}

// TimeoutWarning says when go test's own -timeout would kill a paused VM ("" if not).
func TimeoutWarning() string {
	d := FlagDebug()
	if !d.OnFailure {
		return ""
	}
	if tf := flag.Lookup("test.timeout"); tf != nil {
		if t, err := time.ParseDuration(tf.Value.String()); err == nil && t != 0 && t <= d.Wait {
			return fmt.Sprintf("-timeout %s is not above -debug-wait %s: a paused VM would be killed by the test timeout; use -timeout 0", t, d.Wait)
		}
	}
	return ""
}

func validStage(s string) bool {
	for _, st := range Stages {
		if s == st {
			return true
		}
	}
	return false
}

// Option sets up the VM StartT boots.
type Option func(*config)

type config struct {
	lab          lab.Options
	notes        string // Notes: the run directories' root instead of Config().Notes
	login        bool
	debug        *Debug
	startTimeout time.Duration
	name         string
	warm         string // why the test may start from a saved guest (Warm)

	fixture *images.FixtureSpec // Boot: the fixture variant to build and boot
	shared  string              // Boot: the shared machine's name (SharedAs)
}

// Image is what to boot; its profile says how to log in and power off.
func Image(img lab.Image) Option { return func(c *config) { c.lab.VM.Image = img } }

// Disks attaches disks (created in the run directory unless they have a Path).
func Disks(d ...lab.Disk) Option {
	return func(c *config) { c.lab.VM.Disks = append([]lab.Disk(nil), d...) }
}

// Network gives the VM a NIC and forwards SSH to a loopback port.
func Network() Option { return func(c *config) { c.lab.VM.Net, c.lab.VM.SSH = true, true } }

// NIC gives the VM a NIC without an SSH forward.
func NIC() Option { return func(c *config) { c.lab.VM.Net = true } }

// Memory sets the guest's memory in MiB (default 1024).
func Memory(mb int) Option { return func(c *config) { c.lab.VM.MemoryMB = mb } }

// Accel skips the KVM probe ("kvm" or "tcg"; "" probes; default -accel).
func Accel(a string) Option { return func(c *config) { c.lab.VM.Accel = a } }

// Probe sets the kernel and verdict cache of the KVM probe (default: the image's own
// kernel and the shared cache).
func Probe(kernel, cache string) Option {
	return func(c *config) {
		if kernel != "" {
			c.lab.VM.ProbeKernel = kernel
		}
		if cache != "" {
			c.lab.VM.ProbeCache = cache
		}
	}
}

// Timeouts sets some of the VM's timeouts; those it leaves zero are the harness's,
// scaled by Config().TimeoutScale (lab.Start).
func Timeouts(f func(*lab.Timeouts)) Option { return func(c *config) { f(&c.lab.VM.Timeouts) } }

// Spec adjusts anything else of the VM (a transport switched off, a fake launcher).
func Spec(f func(*lab.Spec)) Option { return func(c *config) { f(&c.lab.VM) } }

// Slug names the run directory (default: the test's name).
func Slug(s string) Option { return func(c *config) { c.lab.Slug = s } }

// Notes is where run directories go (default NotesRoot: -notes, $BOOTLAB_NOTES or
// lab.NotesRootForTests).
func Notes(dir string) Option { return func(c *config) { c.notes = dir } }

// RootKey records the fingerprint of the key embedded in the image.
func RootKey(fingerprint string) Option {
	return func(c *config) { c.lab.RootKeyFingerprint = fingerprint }
}

// Captures says when the boot evidence is taken (default -captures, always).
func Captures(m lab.CaptureMode) Option { return func(c *config) { c.lab.Captures = m } }

// KeepDisks keeps the disk images the run creates (default -keep).
func KeepDisks(keep bool) Option { return func(c *config) { c.lab.KeepDisks = keep } }

// Warm starts the VM from a guest saved before pre-nixos ran (lab.StartWarm: booted
// once held at getty.target, its other units started, saved in the image cache; the
// restored guest then starts its default target, so pre-nixos, the LAN and sshd run in
// this test's VM, on its own blank disks). why says why the test's meaning does not
// depend on the boot itself: a test about boot ordering, the boot medium or anything
// before getty.target must boot cold. Images that cannot start warm boot cold, saying
// why in the test's log.
func Warm(why string) Option { return func(c *config) { c.warm = why } }

// BeforeRelease runs f in a warm-started guest once its disks and a variant's files
// are in place, just before its default target starts (lab.Options.BeforeRelease):
// what pre-nixos will meet, looked at before it runs. A cold boot never calls it.
func BeforeRelease(f func(ctx context.Context, l *lab.Lab) error) Option {
	return func(c *config) { c.lab.BeforeRelease = f }
}

// WarmVariant says the VM's image is base's plus files (lab.Variant): with Warm, it
// starts from base's saved guest with the files written before the release. Boot sets
// it itself for a fixture variant; harness tests set it directly.
func WarmVariant(base lab.Image, files map[string]images.File) Option {
	return func(c *config) { c.lab.Variant = &lab.Variant{Base: base, Files: files} }
}

// RecordAtRelease runs each of cmds (name -> command) as root in a warm-started guest
// just before the release (BeforeRelease) and records its output in got under the same
// name; Boot returns after it ran. A cold boot records nothing.
func RecordAtRelease(cmds, got map[string]string) Option {
	return BeforeRelease(func(ctx context.Context, l *lab.Lab) error {
		for name, cmd := range cmds {
			out, err := l.Succeed(ctx, cmd)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			got[name] = out
		}
		return nil
	})
}

// Held boots cold and holds the boot at getty.target (lab.Held: the hold on the image's
// command line): the point where a warm start's saved guest was taken and where it is
// released, for comparing the two; nothing multi-user.target wants (pre-nixos, the LAN,
// sshd) starts.
func Held() Option {
	return func(c *config) { c.lab.VM.Image = lab.Held(c.lab.VM.Image) }
}

// Login logs in as root after the start (and pauses there with -pause-after login).
func Login() Option { return func(c *config) { c.login = true } }

// WithDebug replaces the debug flags' configuration (tests of the keep itself).
func WithDebug(d Debug) Option { return func(c *config) { c.debug = &d } }

// StartTimeout bounds the start and the login (default 5 minutes, scaled).
func StartTimeout(d time.Duration) Option { return func(c *config) { c.startTimeout = d } }

func newConfig(name string, opts []Option) config {
	c := config{name: name, startTimeout: Scaled(5 * time.Minute)}
	c.lab.VM.MemoryMB = 1024
	// Timeouts, the accelerator, QEMU and the probe's cache come from Config() in
	// lab.Start (startConfig): what the Timeouts option leaves zero is the harness's.
	c.lab.KeepDisks = *flagKeep
	c.lab.Captures, _ = lab.ParseCaptureMode(*flagCaptures) // CheckFlags rejects a bad one
	for _, o := range opts {
		o(&c)
	}
	if c.lab.Slug == "" {
		c.lab.Slug = slugOf(name)
	}
	if c.debug == nil {
		d := FlagDebug()
		c.debug = &d
	}
	return c
}

// startConfig is the configuration the lab starts with: Config(), with Notes's root.
func (c *config) startConfig() bootcfg.Config {
	cfg := Config()
	if c.notes != "" {
		cfg.Notes = c.notes
	}
	return cfg
}

// needsProbeKernel: the accelerator will be probed (none chosen) and the image brings
// no kernel to probe with (an ISO booted through the firmware).
func (c *config) needsProbeKernel() bool {
	return c.lab.VM.ProbeKernel == "" && c.lab.VM.Image.Kernel == "" && c.lab.VM.Accel == "" && Config().Accel == ""
}

var unsafeSlug = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func slugOf(name string) string {
	s := strings.Trim(unsafeSlug.ReplaceAllString(name, "-"), "-")
	if s == "" {
		return "run"
	}
	return strings.ToLower(s)
}

// StartT boots a VM in its own run directory for the test t: when t ends, the VM is
// kept for a person if t failed and debugging was asked for, then stopped, the verdict
// recorded, QEMU checked gone. A VM that cannot start fails t, naming the run directory.
func StartT(t testing.TB, opts ...Option) *lab.Lab {
	t.Helper()
	c := newConfig(t.Name(), opts)
	if c.lab.VM.Launcher == nil {
		// A real QEMU guest (a fake launcher is a unit test of this package's own).
		vmgate.VM(t)
	}
	if c.needsProbeKernel() {
		k, err := probeKernel()
		require.NoError(t, err)
		c.lab.VM.ProbeKernel = k
	}
	if c.lab.Progress == nil {
		// Progress lines (boot steps, each wait's elapsed time) go to the test's log.
		// Made before the lab's cleanup is registered, so it outlives the lab.
		c.lab.Progress = LogWriter(t)
	}
	if c.warm != "" {
		// The first warm start of an image and machine boots and saves the guest.
		c.startTimeout += Scaled(10 * time.Minute)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.startTimeout)
	defer cancel()
	began := time.Now()
	var (
		l   *lab.Lab
		err error
	)
	if c.warm != "" {
		t.Logf("warm start (%s)", c.warm)
		l, err = lab.StartWarm(ctx, c.startConfig(), func(s string) { t.Log(s) }, lab.With(c.lab))
	} else {
		l, err = lab.Start(ctx, c.startConfig(), lab.With(c.lab))
	}
	// A start that failed has already recorded its outcome (an environment error when
	// QEMU never ran a guest) in the run directory its error names, and left no QEMU:
	// nothing to keep, stop or re-record.
	require.NoError(t, err, "starting the VM")
	t.Logf("run directory: %s", l.Dir())
	t.Cleanup(func() { finish(t, l, *c.debug, began) })
	if c.login {
		_, err := l.Login(ctx)
		require.NoError(t, err, "logging in as root (run directory %s)", l.Dir())
		PauseAt(t, l, "login", *c.debug)
	}
	return l
}

// ErrFailed is the verdict recorded for a test that failed.
var ErrFailed = errors.New("test failed")

// finish is StartT's cleanup: keep if failed, record, stop, check QEMU is gone.
func finish(t testing.TB, l *lab.Lab, d Debug, began time.Time) {
	var verdict error
	outcome := runrec.Pass
	if t.Failed() {
		verdict = fmt.Errorf("%s: %w", t.Name(), ErrFailed)
		outcome = runrec.Fail
	}
	KeepIfFailed(t, l, d)
	l.Scenario(t.Name(), outcome, verdict, time.Since(began))
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(3*time.Minute))
	defer cancel()
	if err := l.Close(ctx, verdict); err != nil {
		t.Errorf("closing the run %s: %v", l.Dir(), err)
	}
	if l.Running() {
		t.Errorf("QEMU still running after Close (run directory %s)", l.Dir())
	}
	if err := Reaped(l.Dir()); err != nil {
		t.Errorf("%v", err)
	}
}

// Reaped checks by the pid in the run directory's pidfile that QEMU is gone (nil when it
// never wrote one).
func Reaped(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, lab.PIDFile))
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("reading %s: %w", lab.PIDFile, err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("QEMU pid %d from %s/%s is still running", pid, dir, lab.PIDFile)
	}
	return nil
}

// KeepIfFailed keeps a failed test's VM for a person when d asks for it.
func KeepIfFailed(t testing.TB, l *lab.Lab, d Debug) {
	if t.Failed() && d.OnFailure && l.Running() {
		Pause(l, t.Name()+" failed", d)
	}
}

// PauseAt pauses the VM at stage when -pause-after names it, whatever the verdict.
func PauseAt(t testing.TB, l *lab.Lab, stage string, d Debug) {
	if d.PauseAfter == stage {
		Pause(l, t.Name()+": pause after "+stage, d)
	}
}

// pauseMu lets one VM at a time wait for a person: parallel tests that fail together
// queue up, each with its own message, instead of racing for the Enter key.
var pauseMu sync.Mutex

// Pause keeps the VM for a person exactly as `bootlab run --debug` does
// (lab.KeepForDebug: captures, console socket, capture --running). The message and the
// Enter key use the controlling terminal, since go test gives the test binary no stdin
// and, without -v, shows its output only at the end; without a terminal the VM waits
// d.Wait.
func Pause(l *lab.Lab, why string, d Debug) {
	pauseMu.Lock()
	defer pauseMu.Unlock()
	if d.Wait <= 0 {
		d.Wait = 10 * time.Minute
	}
	o := lab.PauseOptions{Why: why, Out: d.Out, Enter: d.Enter, Wait: d.Wait}
	if o.Out == nil {
		o.Out = os.Stderr
		if o.Enter == nil {
			if tty := lab.ControllingTerminal(); tty != nil {
				defer tty.Close()
				o.Enter = tty
				if !isTerminal(os.Stderr) {
					o.Out = io.MultiWriter(os.Stderr, tty)
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Wait+Scaled(10*time.Minute))
	defer cancel()
	l.KeepForDebug(ctx, o)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
	return err == nil
}

// LogWriter is an io.Writer whose lines go to t.Log until t's cleanups run (writing to
// t.Log after the test is over panics, and a shared VM's checks outlive the test that
// started them).
func LogWriter(t testing.TB) io.Writer {
	w := &testLog{t: t}
	t.Cleanup(w.close)
	return w
}

// testLog forwards lines to t.Log until close.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLog) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
