// Package vm boots one guest: it prepares disks, chooses the accelerator, starts QEMU
// with its serial line on a pty, keeps serial.log, transcript.log and harness.log in a
// run directory, logs in through the shell package, and stops the guest in bounded
// stages. It records milestones as they happen so that a failure at any point still
// says how far the boot got.
package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bootlab/bootlab/artifacts/ansi"
	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/frame"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
)

// Image is what to boot and how its console behaves.
type Image struct {
	Name string
	// ISO alone is booted through the firmware and the ISO's own bootloader; with
	// Kernel it is attached as a CD-ROM while QEMU boots Kernel directly (an ISO's menu
	// entry booted with a serial console, Entry naming it).
	ISO string
	// CDROMBus is the ISO's CD-ROM bus: "" or "ide" (the default), or "scsi"
	// (virtio-scsi; qemu.Config.CDROMBus).
	CDROMBus string
	Kernel   string
	Initrd   string
	Append   string
	// Entry is the label of the ISO menu entry Kernel/Initrd/Append came from, or the
	// one the ISO's bootloader boots, whose command line EntryCmdline is (records only).
	Entry        string
	EntryCmdline string
	Profile      shell.Profile
	// Poweroff is typed as root to stop the guest cleanly (default: the profile's).
	Poweroff string
}

// DiskSpec is a disk created for this VM (or an existing one, if Path is set).
type DiskSpec struct {
	Name         string // file name in the run directory, e.g. "disk0.img"
	SizeMB       int
	Bus          string // virtio (default) or scsi-hd
	RotationRate int
	Serial       string
	Path         string // use this file instead of creating one
	// Seed runs on the host after the disk file is created and before boot, for
	// example to put a file system with a marker file on it.
	Seed func(ctx context.Context, path string) error
}

// Spec describes a VM.
type Spec struct {
	Image    Image
	Disks    []DiskSpec
	Net      bool
	SSH      bool // forward guest port 22 to a free 127.0.0.1 port
	MemoryMB int
	CPUs     int
	// CPUModel and TBSizeMB tune the emulated CPU (qemu.Config); zero values keep
	// QEMU's defaults. docs/benchmarks.md has what each costs or saves under TCG.
	CPUModel string
	TBSizeMB int
	// RestoreFrom is a state file a VM with the same devices saved (lab.SaveState):
	// QEMU starts with -incoming and the guest resumes where it was instead of booting.
	// The disks must hold what they held when it was saved (the same files), unless
	// the guest was saved without disks and is given them by HotplugDisks
	// (lab.StartWarm).
	RestoreFrom string
	// HotplugDisks leaves the disks off QEMU's command line: they are created (and
	// seeded) as always, and attached to the running guest by AttachDisks. The machine
	// gets a virtio-scsi controller for them whether or not one is needed, so a guest
	// saved without disks restores into a machine given any set of them
	// (lab.StartWarm: one saved state for every device set).
	HotplugDisks bool
	// Accel is kvm or tcg; empty means probe (ProbeKernel is booted under KVM once).
	Accel       string
	ProbeKernel string
	ProbeCache  string
	Timeouts    Timeouts
	// NoChannel leaves out the virtio-serial frame channel, so framed output travels
	// on the console (base64 + MD5): for images whose kernel has no virtio_console,
	// and for tests of that transport.
	NoChannel bool
	Launcher  qemu.Launcher
	Binary    string
	// Progress receives human-readable progress lines (optional).
	Progress io.Writer
	// OnMilestone is told about each milestone as it is reached (run records).
	OnMilestone func(name string, at time.Time)
	// QuickStop, when set, says why nothing on the guest needs a clean shutdown
	// (read-only media, scratch disks the run deletes): Stop then syncs the guest's
	// writes and quits QEMU instead of asking the guest to power off. Empty: the guest
	// powers itself off (a kept disk, existing storage, the shutdown under test).
	QuickStop string
}

// Timeouts bound each phase; Scale multiplies them all (slow machines, TCG).
type Timeouts struct {
	Login, Step, Command, Probe time.Duration
	// NoSerial bounds how long an ISO booted through the firmware may stay silent on
	// the serial console before the wait gives up with ErrNoSerialOutput (0: no bound).
	NoSerial time.Duration
	Stop     qemu.StopTimeouts
	// Scale is the factor these were scaled by (Scaled keeps it; 0 counts as 1): QEMU's
	// early-exit window follows it.
	Scale float64
}

// BaseTimeouts are generous for TCG, unscaled: lab scales them with the run's
// config.Config.TimeoutScale (BaseTimeouts().Scaled(cfg.TimeoutScale)); a Spec without
// Timeouts gets them unscaled.
func BaseTimeouts() Timeouts {
	// NoSerial: the fixture's ISOLINUX speaks within a few seconds of spawn under TCG;
	// a bootloader that has said nothing after 30 s is drawing on a screen nobody sees.
	return Timeouts{Login: 5 * time.Minute, Step: 90 * time.Second, Command: 5 * time.Minute, Probe: 20 * time.Second, NoSerial: 30 * time.Second, Stop: qemu.DefaultStopTimeouts()}
}

// Scaled multiplies every timeout by f.
func (t Timeouts) Scaled(f float64) Timeouts {
	m := func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
	scale := t.Scale
	if scale <= 0 {
		scale = 1
	}
	return Timeouts{Scale: scale * f, Login: m(t.Login), Step: m(t.Step), Command: m(t.Command), Probe: m(t.Probe), NoSerial: m(t.NoSerial),
		Stop: qemu.StopTimeouts{Guest: m(t.Stop.Guest), Powerdown: m(t.Stop.Powerdown), Quit: m(t.Stop.Quit), Term: m(t.Stop.Term), Kill: m(t.Stop.Kill),
			Sync: m(t.Stop.Sync), Grace: m(t.Stop.Grace)}}
}

// Milestone is a named moment of the run.
type Milestone struct {
	Name string        `json:"name"`
	At   time.Duration `json:"at_ns"` // since spawn
}

// VM is a booted (or booting) guest. Its insides are unexported: harness/lab is the
// door callers go through, and what it needs is a method here.
type VM struct {
	spec        Spec
	dir         string
	machine     *qemu.Machine
	console     *console.Console
	sh          *shell.Shell
	accel       qemu.AccelChoice
	qemuVersion string
	log         *slog.Logger

	master, slave *os.File
	files         []io.Closer
	chListener    net.Listener
	channel       *console.Console // the frame channel's host side, once QEMU connected
	chConn        net.Conn
	mu            sync.Mutex
	milestones    []Milestone
	spawned       time.Time
	stopped       bool
	stopStage     qemu.StopStage
	stopReport    qemu.StopReport
	quickStop     string
	pending       []qemu.Disk // HotplugDisks: prepared, not attached yet (AttachDisks)
}

// Log is the VM's structured log (harness.log).
func (v *VM) Log() *slog.Logger { return v.log }

// Accel is the accelerator the VM runs under and why.
func (v *VM) Accel() qemu.AccelChoice { return v.accel }

// QEMUVersion is the first line of `qemu --version` (empty under a test launcher).
func (v *VM) QEMUVersion() string { return v.qemuVersion }

// Shell is the logged-in shell, nil before Login (or an adopted one).
func (v *VM) Shell() *shell.Shell { return v.sh }

// Console is the guest's serial console.
func (v *VM) Console() *console.Console { return v.console }

// Machine is the QEMU process.
func (v *VM) Machine() *qemu.Machine { return v.machine }

// Pid is QEMU's process id (0 before it started).
func (v *VM) Pid() int {
	if v.machine == nil {
		return 0
	}
	return v.machine.Pid()
}

// ExitStatus is QEMU's exit status, "running" while it runs, "not started" before.
func (v *VM) ExitStatus() string {
	if v.machine == nil {
		return "not started"
	}
	return v.machine.ExitStatus()
}

// QEMUState describes QEMU for a diagnostic: its exit status (or pid) and its stderr;
// empty when it never started.
func (v *VM) QEMUState() string {
	if v.machine == nil {
		return ""
	}
	st := v.machine.ExitStatus()
	if st == "running" {
		st = fmt.Sprintf("running (pid %d)", v.machine.Pid())
	}
	return st + "\nQEMU stderr:\n" + strings.TrimSpace(v.machine.Stderr())
}

// Files in a run directory written by this package.
const (
	SerialLog     = "serial.log"
	TranscriptLog = "transcript.log"
	// ChannelLog holds every byte the guest wrote to the frame channel (framed
	// command output, markers included), as serial.log does for the console.
	ChannelLog = "channel.log"
	HarnessLog = "harness.log"
	PIDFile    = "qemu.pid"
)

// Start prepares disks and launches QEMU; it does not wait for the guest. dir is the run
// directory; it must exist and be writable.
func Start(ctx context.Context, dir string, spec Spec) (v *VM, err error) {
	if spec.Timeouts.Login == 0 {
		spec.Timeouts = BaseTimeouts()
	}
	v = &VM{spec: spec, dir: dir}
	self := v
	defer func() {
		if err != nil {
			self.closeFiles()
		}
	}()
	hl, err := v.create(HarnessLog)
	if err != nil {
		return nil, err
	}
	v.log = slog.New(slog.NewJSONHandler(hl, &slog.HandlerOptions{Level: slog.LevelDebug}))
	serial, err := v.create(SerialLog)
	if err != nil {
		return nil, err
	}
	transcript, err := v.create(TranscriptLog)
	if err != nil {
		return nil, err
	}

	binary := spec.Binary
	if spec.Launcher == nil {
		if binary, err = qemu.FindBinary(spec.Binary); err != nil {
			return nil, err
		}
		if v.qemuVersion, err = qemu.Version(ctx, binary); err != nil {
			return nil, err
		}
	}
	disks, err := v.prepareDisks(ctx)
	if err != nil {
		return nil, err
	}
	v.accel = qemu.AccelChoice{Accel: spec.Accel, Reason: "requested"}
	if spec.Accel == "" {
		v.progress("probing KVM (a short test boot; TCG if it hangs)")
		v.accel = qemu.ProbeAccel(ctx, qemu.ProbeOptions{Binary: binary, Kernel: spec.ProbeKernel, Timeout: spec.Timeouts.Probe, CacheFile: spec.ProbeCache, Logger: v.log})
		if spec.OnMilestone != nil {
			// The probe can take its whole timeout; the timeline should say where time went.
			spec.OnMilestone("accel_probe", time.Now())
		}
	}
	v.log.Info("vm.accel", "accel", v.accel.Accel, "reason", v.accel.Reason)

	files, err := privateRunFiles(dir)
	if err != nil {
		return nil, err
	}
	if v.master, v.slave, err = console.OpenPTY(); err != nil {
		return nil, err
	}
	v.console = console.New(v.master, console.Options{
		SerialLog: serial, Transcript: transcript, Normalizer: &ansi.Normalizer{}, AnswerDSR: true, Logger: v.log,
	})
	cfg := qemu.Config{
		Name: "bootlab-" + filepath.Base(dir), Binary: binary, Accel: v.accel.Accel,
		MemoryMB: spec.MemoryMB, CPUs: spec.CPUs, CPUModel: spec.CPUModel, TBSizeMB: spec.TBSizeMB,
		ISO: spec.Image.ISO, CDROMBus: spec.Image.CDROMBus, Kernel: spec.Image.Kernel, Initrd: spec.Image.Initrd, Append: spec.Image.Append,
		Disks: disks, Net: spec.Net || spec.SSH, RNG: true, RestoreFrom: spec.RestoreFrom,
	}
	if spec.HotplugDisks {
		cfg.Disks, cfg.HotplugSCSI, v.pending = nil, true, disks
	}
	if spec.SSH {
		cfg.Forwards = []qemu.Forward{{Name: "ssh", GuestPort: 22}}
	}
	if !spec.NoChannel {
		if cfg.Channel, err = v.listenChannel(files.Channel); err != nil {
			return nil, err
		}
	}
	v.spawned = time.Now()
	m, err := qemu.Start(ctx, cfg, qemu.StartOptions{Launcher: spec.Launcher, Files: files, Serial: v.slave, Logger: v.log, TimeoutScale: spec.Timeouts.Scale})
	if err != nil {
		v.log.Error("vm.start_failed", "error", err.Error())
		// The VM is returned with the error: its logs say how far it got.
		return v, fmt.Errorf("starting the VM: %w", err)
	}
	v.machine = m
	v.markAt("spawn", m.Started)
	// QEMU holds its own copy of the slave; ours must go, or the line never reports EOF.
	v.slave.Close()
	v.slave = nil
	_ = os.WriteFile(filepath.Join(dir, PIDFile), []byte(strconv.Itoa(m.Pid())+"\n"), 0o644)
	go v.watchFirstOutput()
	return v, nil
}

// listenChannel listens where QEMU will connect the frame channel's port and attaches
// each connection as the channel (a QEMU retried after a port collision connects anew;
// the newest connection wins).
func (v *VM) listenChannel(path string) (*qemu.Channel, error) {
	chlog, err := v.create(ChannelLog)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening for the frame channel: %w", err)
	}
	v.chListener = ln
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c := console.New(conn, console.Options{SerialLog: chlog, Logger: v.log})
			v.mu.Lock()
			old := v.chConn
			v.channel, v.chConn = c, conn
			v.mu.Unlock()
			if old != nil {
				old.Close()
			}
			v.log.Info("vm.channel_connected")
		}
	}()
	return &qemu.Channel{Name: frame.ChannelName, Socket: path}, nil
}

// Channel is the host side of the frame channel, or nil if QEMU has not connected it.
func (v *VM) Channel() *console.Console {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.channel
}

func (v *VM) create(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(v.dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating %s in the run directory: %w", name, err)
	}
	v.files = append(v.files, f)
	return f, nil
}

// privateRunFiles puts QEMU's control socket in a short private directory: unix socket
// paths are limited to 108 bytes and run directories can be deep.
func privateRunFiles(dir string) (qemu.RunFiles, error) {
	tmp, err := os.MkdirTemp("", "bootlab-qemu-")
	if err != nil {
		return qemu.RunFiles{}, fmt.Errorf("creating a private directory for QMP: %w", err)
	}
	f, err := qemu.NewRunFiles(tmp)
	if err != nil {
		return f, err
	}
	f.Stderr = filepath.Join(dir, "qemu-stderr.log")
	return f, nil
}

func (v *VM) prepareDisks(ctx context.Context) ([]qemu.Disk, error) {
	var out []qemu.Disk
	for i, d := range v.spec.Disks {
		path := d.Path
		if path == "" {
			name := d.Name
			if name == "" {
				name = fmt.Sprintf("disk%d.img", i)
			}
			path = filepath.Join(v.dir, name)
			if err := sparseFile(path, int64(d.SizeMB)<<20); err != nil {
				return nil, err
			}
		}
		if d.Seed != nil {
			if err := d.Seed(ctx, path); err != nil {
				return nil, fmt.Errorf("seeding disk %s: %w", path, err)
			}
		}
		out = append(out, qemu.Disk{Path: path, Bus: d.Bus, RotationRate: d.RotationRate, Serial: d.Serial})
	}
	return out, nil
}

// sparseFile makes a blank disk image: every VM gets its own, so no two QEMUs fight
// over an image lock.
func sparseFile(path string, size int64) error {
	if size <= 0 {
		return fmt.Errorf("disk %s: size must be positive", path)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("creating disk image: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("sizing disk image %s: %w", path, err)
	}
	return nil
}

func (v *VM) watchFirstOutput() {
	for {
		select {
		case <-v.machine.Exited():
			return
		case <-time.After(50 * time.Millisecond):
		}
		if t := v.console.FirstOutput(); !t.IsZero() {
			v.markAt("first_output", t)
			v.watchBootPhases()
			return
		}
	}
}

// watchBootPhases records each of the profile's boot phases when its line first
// appears. Each phase is watched on its own from the start of the console: an image
// that prints one phase's line and not another's (a quiet kernel) still gets the later
// ones. It reads the console like any other waiter and ends with the VM or after the
// login timeout.
func (v *VM) watchBootPhases() {
	ctx, cancel := context.WithTimeout(context.Background(), v.spec.Timeouts.Login)
	defer cancel()
	go func() {
		select {
		case <-v.machine.Exited():
		case <-ctx.Done():
		}
		cancel()
	}()
	var wg sync.WaitGroup
	for _, ph := range v.spec.Image.Profile.Phases() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.console.Expect(ctx, 0, console.Pattern{Name: ph.Name, Re: ph.Re}); err == nil {
				v.mark(ph.Name)
			}
		}()
	}
	wg.Wait()
}

func (v *VM) progress(msg string) {
	if v.spec.Progress != nil {
		fmt.Fprintf(v.spec.Progress, "bootlab: %s\n", msg)
	}
}

func (v *VM) mark(name string) { v.markAt(name, time.Now()) }

func (v *VM) markAt(name string, at time.Time) {
	v.mu.Lock()
	since := at.Sub(v.spawned)
	v.milestones = append(v.milestones, Milestone{Name: name, At: since})
	v.mu.Unlock()
	if v.spec.OnMilestone != nil {
		v.spec.OnMilestone(name, at)
	}
	if v.log != nil {
		v.log.Info("vm.milestone", "name", name, "after", since.Round(time.Millisecond).String())
	}
	v.progress(fmt.Sprintf("%-14s %7.1fs", name, since.Seconds()))
}

// Mark records a milestone reached by the caller (storage_status, ipv4, ssh, ...).
func (v *VM) Mark(name string) { v.mark(name) }

// Milestones returns the milestones so far, in order.
func (v *VM) Milestones() []Milestone {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Milestone(nil), v.milestones...)
}

// Login waits for the guest's login prompt and gets a verified root shell.
func (v *VM) Login(ctx context.Context) (*shell.Shell, error) {
	gctx, silent, stopGuard := v.GuardSilence(ctx)
	defer stopGuard()
	sh, err := v.login(gctx)
	return sh, silent(err)
}

// ErrNoSerialOutput is wrapped by the error of a wait that gave up because an ISO booted
// through the firmware said nothing on the serial console.
var ErrNoSerialOutput = errors.New("no output on the serial console")

// GuardSilence returns a context that ends when the VM boots an ISO through the
// firmware and nothing has arrived on the serial console Timeouts.NoSerial after spawn,
// and a function that turns the error of a wait cut short that way into one saying
// so and what to try. Upstream ISOs' bootloaders and default entries talk to a VGA
// screen; without this the run would wait out the whole login timeout and say only
// that no login prompt came.
func (v *VM) GuardSilence(ctx context.Context) (context.Context, func(error) error, context.CancelFunc) {
	gctx, cancel := context.WithCancel(ctx)
	limit := v.spec.Timeouts.NoSerial
	if v.spec.Image.ISO == "" || v.spec.Image.Kernel != "" || limit <= 0 || v.console == nil {
		return gctx, func(err error) error { return err }, cancel
	}
	var fired atomic.Bool
	go func() {
		t := time.NewTimer(time.Until(v.spawned.Add(limit)))
		defer t.Stop()
		select {
		case <-gctx.Done():
		case <-t.C:
			if v.console.FirstOutput().IsZero() {
				fired.Store(true)
				v.log.Warn("vm.no_serial_output", "after", limit.String())
				cancel()
			}
		}
	}()
	wrap := func(err error) error {
		if err == nil || !fired.Load() || ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w %s after the firmware handed over to the ISO's bootloader: its menu and "+
			"kernel are talking to a VGA screen nobody sees. Try --boot direct (boot the entry's kernel with "+
			"console=ttyS0,115200n8 added) or --entry with an entry that has a serial console "+
			"(bootlab inspect --menu ISO lists them) [%v]", ErrNoSerialOutput, limit, err)
	}
	return gctx, wrap, cancel
}

func (v *VM) login(ctx context.Context) (*shell.Shell, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// QEMU dying ends the wait at once with its status, not at the timeout.
	go func() {
		select {
		case <-v.machine.Exited():
			cancel()
		case <-lctx.Done():
		}
	}()
	sh, err := shell.Login(lctx, v.console, v.spec.Image.Profile, shell.Options{
		Logger: v.log, LoginTimeout: v.spec.Timeouts.Login, StepTimeout: v.spec.Timeouts.Step,
		Milestone: func(name string, at time.Time) { v.markAt(name, at) },
		Channel:   v.Channel,
	})
	if err != nil {
		select {
		case <-v.machine.Exited():
			return nil, fmt.Errorf("QEMU exited (%s) before a root shell was reached: %w\nQEMU stderr:\n%s", v.machine.ExitStatus(), err, strings.TrimSpace(v.machine.Stderr()))
		default:
		}
		return nil, err
	}
	v.sh = sh
	return sh, nil
}

// Run runs a framed command with the default command timeout.
func (v *VM) Run(ctx context.Context, cmd string, opts ...shell.RunOption) (shell.Result, error) {
	if v.sh == nil {
		return shell.Result{}, errors.New("no shell: Login first")
	}
	opts = append([]shell.RunOption{shell.Timeout(v.spec.Timeouts.Command)}, opts...)
	return v.sh.Run(ctx, cmd, opts...)
}

func (v *VM) closeFiles() {
	if v.master != nil {
		v.master.Close()
	}
	if v.chListener != nil {
		v.chListener.Close()
	}
	v.mu.Lock()
	conn, ch := v.chConn, v.channel
	v.mu.Unlock()
	if conn != nil {
		conn.Close()
		select {
		case <-ch.Done():
		case <-time.After(2 * time.Second):
		}
	}
	if v.slave != nil {
		v.slave.Close()
	}
	if v.console != nil {
		select {
		case <-v.console.Done():
		case <-time.After(2 * time.Second):
		}
	}
	for _, f := range v.files {
		if s, ok := f.(interface{ Sync() error }); ok {
			_ = s.Sync()
		}
		f.Close()
	}
	v.files = nil
}

// SSHPort is the loopback port forwarded to the guest's port 22 (0 without SSH).
func (v *VM) SSHPort() int {
	if v.machine == nil {
		return 0
	}
	return v.machine.HostPort("ssh")
}

// QEMUArgv is the full command line, for metadata.
func (v *VM) QEMUArgv() []string {
	if v.machine == nil {
		return nil
	}
	return append([]string{v.machine.Binary}, v.machine.Args...)
}

// Running reports whether QEMU is still up.
func (v *VM) Running() bool {
	if v.machine == nil {
		return false
	}
	select {
	case <-v.machine.Exited():
		return false
	default:
		return true
	}
}

// HostTool checks for a host command used by a scenario, naming the package to install.
func HostTool(name, pkg string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("%s not found on PATH: install it with `apt-get install %s`", name, pkg)
	}
	return nil
}

// Adopt makes sh, a root shell taken over on the console (lab.AdoptShell), the VM's
// shell: Run, captures and the stop then use it.
func (v *VM) Adopt(sh *shell.Shell) { v.sh = sh }

// Dir is the run directory the VM keeps its logs in.
func (v *VM) Dir() string { return v.dir }
