package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bootlab/bootlab/harness/config"
)

// Process is a started QEMU (or a stand-in in tests).
type Process interface {
	Pid() int
	// Wait blocks until the process has exited and been reaped.
	Wait() error
	// Signal sends sig to the process group.
	Signal(sig syscall.Signal) error
}

// Launcher starts a QEMU process. Tests substitute one that runs a simulated guest.
type Launcher interface {
	Launch(ctx context.Context, binary string, args []string, serial *os.File, stderr io.Writer) (Process, error)
}

// ExecLauncher starts real processes.
type ExecLauncher struct{}

type execProcess struct{ cmd *exec.Cmd }

func (p *execProcess) Pid() int    { return p.cmd.Process.Pid }
func (p *execProcess) Wait() error { return p.cmd.Wait() }
func (p *execProcess) Signal(sig syscall.Signal) error {
	// Negative pid: the whole process group, so helpers QEMU forked die too.
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Launch starts binary in its own process group with the serial pty as stdin and
// stdout, and asks the kernel to kill it if the harness dies (parent-death signal), so
// an interrupted test never leaves a QEMU behind.
func (ExecLauncher) Launch(ctx context.Context, binary string, args []string, serial *os.File, stderr io.Writer) (Process, error) {
	cmd := exec.Command(binary, args...)
	cmd.Stdin = serial
	cmd.Stdout = serial
	cmd.Stderr = stderr
	cmd.SysProcAttr = groupAndDieWithParent()
	// The parent-death signal fires when the creating *thread* exits; pinning the
	// goroutine keeps the Go runtime from retiring that thread under us.
	runtime.LockOSThread()
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	return &execProcess{cmd: cmd}, nil
}

// FindBinary locates QEMU, with a message that says what to install.
func FindBinary(name string) (string, error) {
	if name == "" {
		name = "qemu-system-x86_64"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found on PATH: install it with `apt-get install qemu-system-x86` (or set BOOTLAB_QEMU, or --qemu)", name)
	}
	return p, nil
}

// Version returns the first line of `qemu --version`.
func Version(ctx context.Context, binary string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w (%s)", binary, err, bytes.TrimSpace(out))
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// Machine is a running QEMU.
type Machine struct {
	Config  Config
	Binary  string
	Args    []string
	Files   RunFiles
	Started time.Time

	proc   Process
	log    *slog.Logger
	stderr *lockedBuffer

	exited  chan struct{}
	exitErr error
	exitAt  time.Time

	qmpMu sync.Mutex
	qmp   *qmpClient
}

// StartOptions are what Start needs besides the machine description.
type StartOptions struct {
	Launcher Launcher
	Files    RunFiles
	// Serial is the slave end of the pty that becomes the guest's serial line.
	Serial *os.File
	Logger *slog.Logger
	// EarlyExitWindow is how long Start watches for QEMU dying at once (a hostfwd or
	// image-lock failure), which it then reports or retries.
	EarlyExitWindow time.Duration
	// TimeoutScale multiplies the default EarlyExitWindow (config.Config.TimeoutScale,
	// passed down; 0 counts as 1).
	TimeoutScale float64
	// PortAttempts bounds the retries after a host port collision.
	PortAttempts int
}

// earlyExitWindow is StartOptions.EarlyExitWindow's default on an idle machine, before
// the timeout scale and the load factor.
const earlyExitWindow = 500 * time.Millisecond

// loadFactor measures the machine's load (a variable for tests).
var loadFactor = config.LoadFactor

// StartError is QEMU failing to start or dying at once; it carries QEMU's own words.
type StartError struct {
	Reason     string
	ExitStatus string
	Stderr     string
	Argv       []string
}

func (e *StartError) Error() string {
	return fmt.Sprintf("QEMU failed to start: %s (exit status: %s)\nQEMU stderr:\n%s", e.Reason, e.ExitStatus, strings.TrimSpace(e.Stderr))
}

var (
	hostfwdFailure = regexp.MustCompile(`Could not set up host forwarding rule`)
	lockFailure    = regexp.MustCompile(`Failed to get "(?:write|read|shared)" lock`)
)

// Start launches the machine. Port forwards with HostPort 0 get a free loopback port; if
// QEMU dies because the port was taken in between, Start tries again with another.
func Start(ctx context.Context, cfg Config, opts StartOptions) (*Machine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid machine configuration: %w", err)
	}
	if opts.Launcher == nil {
		opts.Launcher = ExecLauncher{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.EarlyExitWindow <= 0 {
		// QEMU refuses a bad kernel or a taken port within a few hundred milliseconds on
		// an idle machine, and ten times later on two cores at load 20: a fixed window let
		// a QEMU that died just after it pass for started (issue 26).
		scale := opts.TimeoutScale
		if scale <= 0 {
			scale = 1
		}
		opts.EarlyExitWindow = time.Duration(float64(earlyExitWindow) * scale * loadFactor())
	}
	if opts.PortAttempts <= 0 {
		opts.PortAttempts = 5
	}
	bin := cfg.Binary
	if _, isExec := opts.Launcher.(ExecLauncher); isExec || bin == "" {
		b, err := FindBinary(cfg.Binary)
		if err != nil {
			return nil, err
		}
		bin = b
	}
	auto := make([]bool, len(cfg.Forwards))
	for i, f := range cfg.Forwards {
		auto[i] = f.HostPort == 0
	}
	var lastErr error
	for attempt := 1; attempt <= opts.PortAttempts; attempt++ {
		cfg.Forwards = append([]Forward(nil), cfg.Forwards...)
		for i := range cfg.Forwards {
			if auto[i] {
				p, err := FreePort()
				if err != nil {
					return nil, err
				}
				cfg.Forwards[i].HostPort = p
			}
		}
		m, err := startOnce(ctx, bin, cfg, opts)
		if err == nil {
			return m, nil
		}
		lastErr = err
		var se *StartError
		if errors.As(err, &se) && hostfwdFailure.MatchString(se.Stderr) && anyTrue(auto) {
			opts.Logger.Warn("qemu.hostfwd_collision", "attempt", attempt, "stderr", strings.TrimSpace(se.Stderr))
			continue
		}
		return nil, err
	}
	return nil, fmt.Errorf("giving up after %d host port collisions: %w", opts.PortAttempts, lastErr)
}

func anyTrue(b []bool) bool {
	for _, v := range b {
		if v {
			return true
		}
	}
	return false
}

func startOnce(ctx context.Context, bin string, cfg Config, opts StartOptions) (*Machine, error) {
	_ = os.Remove(opts.Files.QMP)
	_ = os.Remove(opts.Files.PID)
	args := cfg.Args(opts.Files.QMP, opts.Files.PID)
	stderrFile, err := os.OpenFile(opts.Files.Stderr, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening QEMU stderr log: %w", err)
	}
	buf := &lockedBuffer{}
	m := &Machine{Config: cfg, Binary: bin, Args: args, Files: opts.Files, log: opts.Logger, stderr: buf, exited: make(chan struct{})}
	opts.Logger.Info("qemu.spawn", "argv", append([]string{bin}, args...))
	m.Started = time.Now()
	proc, err := opts.Launcher.Launch(ctx, bin, args, opts.Serial, io.MultiWriter(stderrFile, buf))
	if err != nil {
		stderrFile.Close()
		return nil, err
	}
	m.proc = proc
	go func() {
		err := proc.Wait()
		stderrFile.Close()
		m.exitErr = err
		m.exitAt = time.Now()
		close(m.exited)
		opts.Logger.Info("qemu.exited", "pid", proc.Pid(), "status", exitStatus(err), "after", time.Since(m.Started).String())
	}()
	select {
	case <-m.exited:
		se := &StartError{ExitStatus: exitStatus(m.exitErr), Stderr: buf.String(), Argv: append([]string{bin}, args...)}
		switch {
		case hostfwdFailure.MatchString(se.Stderr):
			se.Reason = "a forwarded host port was already in use"
		case lockFailure.MatchString(se.Stderr):
			se.Reason = "a disk image is locked by another process (another QEMU using " + lockedImage(se.Stderr, cfg) + "?)"
		default:
			se.Reason = "QEMU exited immediately"
		}
		return nil, se
	case <-time.After(opts.EarlyExitWindow):
	case <-ctx.Done():
		m.Kill()
		return nil, fmt.Errorf("starting QEMU: %w", ctx.Err())
	}
	return m, nil
}

// lockedImage names the image QEMU complained about, or all disk paths if it is unclear.
func lockedImage(stderr string, cfg Config) string {
	for _, d := range cfg.Disks {
		if strings.Contains(stderr, d.Path) {
			return d.Path
		}
	}
	var all []string
	for _, d := range cfg.Disks {
		all = append(all, d.Path)
	}
	if cfg.ISO != "" {
		all = append(all, cfg.ISO)
	}
	return strings.Join(all, ", ")
}

// FreePort asks the kernel for a free loopback port. Another process can take it before
// QEMU binds it; Start retries when that happens.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Pid is QEMU's process id.
func (m *Machine) Pid() int { return m.proc.Pid() }

// Exited is closed once QEMU has exited and been reaped.
func (m *Machine) Exited() <-chan struct{} { return m.exited }

// ExitStatus describes how QEMU ended ("running" while it has not).
func (m *Machine) ExitStatus() string {
	select {
	case <-m.exited:
		return exitStatus(m.exitErr)
	default:
		return "running"
	}
}

// Stderr is what QEMU wrote to its standard error so far.
func (m *Machine) Stderr() string { return m.stderr.String() }

// HostPort returns the host side of a named forward.
func (m *Machine) HostPort(name string) int {
	for _, f := range m.Config.Forwards {
		if f.Name == name {
			return f.HostPort
		}
	}
	return 0
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return "exit status " + strconv.Itoa(ee.ExitCode())
	}
	return err.Error()
}

// StopStage names how far a shutdown had to go.
type StopStage string

// Shutdown stages, gentlest first. StopSync is no way of stopping: it flushes the
// guest's writes before a stop that goes straight to quit.
const (
	StopAlreadyExited StopStage = "already-exited"
	StopGuest         StopStage = "guest-poweroff"
	StopPowerdown     StopStage = "qmp-system_powerdown"
	StopSync          StopStage = "guest-sync"
	StopQuit          StopStage = "qmp-quit"
	StopTerm          StopStage = "SIGTERM"
	StopKill          StopStage = "SIGKILL"
)

// StopTimeouts bound each stage of Stop.
type StopTimeouts struct {
	Guest, Powerdown, Quit, Term, Kill time.Duration
	// Sync bounds StopPlan.Sync (0: 5 s).
	Sync time.Duration
	// Grace is how long a StopPlan.Watch gives the guest to show shutdown progress
	// after it printed its prompt again or refused (the watcher's own bound; 0: 2 s).
	Grace time.Duration
}

// DefaultStopTimeouts are generous for TCG, where an ACPI powerdown takes seconds. They
// are upper bounds: a stage whose guest shows it will not act (StopPlan.Watch) ends at
// once.
func DefaultStopTimeouts() StopTimeouts {
	return StopTimeouts{Guest: 30 * time.Second, Powerdown: 20 * time.Second, Quit: 5 * time.Second, Term: 5 * time.Second, Kill: 10 * time.Second, Sync: 5 * time.Second, Grace: 2 * time.Second}
}

// StopPlan is how Stop ends this guest: which stages run, and how it learns early that
// one will not work.
type StopPlan struct {
	Timeouts StopTimeouts
	// Guest types the guest's own poweroff; nil skips that stage, GuestSkip saying why.
	Guest     func(context.Context) error
	GuestSkip string
	// PowerdownSkip, when set, says why the ACPI power button is not pressed (a guest
	// with no ACPI handling, or a stop that does not need the guest's cooperation).
	PowerdownSkip string
	// Sync, when set, flushes the guest's writes before quit (a stop that skips the
	// polite stages because nothing on the guest needs a clean shutdown).
	Sync func(context.Context) error
	// Watch is started with each polite stage (guest poweroff, power button) once its
	// command was delivered. It returns why the guest will not act on it (the shell's
	// prompt came back, `poweroff: not found`, no shutdown progress within a grace) as
	// soon as the console shows it, and "" when ctx ends first; the stage then ends
	// without waiting out its timeout. Nil: every stage waits its full timeout.
	Watch func(ctx context.Context, stage StopStage) string
}

// StageReport is one stage of a stop: when it ran, how long, and why it ended.
type StageReport struct {
	Stage StopStage
	Start time.Time
	Took  time.Duration
	// Ended is why the stage ended: "QEMU exited", "refused: ...", "timed out after
	// 30s", "skipped: ...", "failed: ...", "done" (sync).
	Ended string
}

// StopReport is what a stop did.
type StopReport struct {
	// Stage is the stage that ended QEMU.
	Stage  StopStage
	Stages []StageReport
}

// Stop ends QEMU in stages: the guest's own poweroff (guestPoweroff, may be nil), QMP
// system_powerdown, QMP quit, SIGTERM, SIGKILL, each waiting its full timeout. StopWith
// takes a plan that skips and cuts short stages on evidence.
func (m *Machine) Stop(ctx context.Context, guestPoweroff func(context.Context) error, t StopTimeouts) (StopStage, error) {
	r, err := m.StopWith(ctx, StopPlan{Timeouts: t, Guest: guestPoweroff})
	return r.Stage, err
}

// StopWith ends QEMU as plan says: the guest's poweroff, the ACPI power button, the
// guest's sync, QMP quit, SIGTERM, SIGKILL. Each stage waits a bounded time for the
// process to exit, and less when plan.Watch sees the guest will not act. The process is
// always reaped when StopWith returns, whatever ctx says, because a leaked QEMU is worse
// than a slow test. Every stage is logged (qemu.stop_stage) with its time and why it
// ended.
func (m *Machine) StopWith(ctx context.Context, plan StopPlan) (StopReport, error) {
	var rep StopReport
	if m.waitExit(0) {
		rep.Stage = StopAlreadyExited
		return rep, nil
	}
	t := plan.Timeouts
	if t.Sync <= 0 {
		t.Sync = 5 * time.Second
	}
	record := func(stage StopStage, start time.Time, ended string) {
		took := time.Since(start)
		rep.Stages = append(rep.Stages, StageReport{Stage: stage, Start: start, Took: took, Ended: ended})
		m.log.Info("qemu.stop_stage", "stage", string(stage), "took", took.Round(time.Millisecond).String(), "ended", ended)
	}
	type stageDef struct {
		stage  StopStage
		wait   time.Duration
		do     func(context.Context) error
		skip   string
		polite bool // the guest decides: Watch may end it early
		noExit bool // does not stop QEMU (sync): no wait for an exit
	}
	powerdown := func(ctx context.Context) error { return m.QMP(ctx, "system_powerdown", nil) }
	guestSkip := plan.GuestSkip
	if plan.Guest == nil && guestSkip == "" {
		guestSkip = "no shell to type it into"
	}
	stages := []stageDef{
		{stage: StopGuest, wait: t.Guest, do: plan.Guest, skip: guestSkip, polite: true},
		{stage: StopPowerdown, wait: t.Powerdown, do: powerdown, skip: plan.PowerdownSkip, polite: true},
	}
	if plan.Sync != nil {
		stages = append(stages, stageDef{stage: StopSync, wait: t.Sync, do: plan.Sync, noExit: true})
	}
	stages = append(stages,
		stageDef{stage: StopQuit, wait: t.Quit, do: func(ctx context.Context) error { return m.QMP(ctx, "quit", nil) }},
		stageDef{stage: StopTerm, wait: t.Term, do: func(context.Context) error { return m.proc.Signal(syscall.SIGTERM) }},
	)
	for _, s := range stages {
		start := time.Now()
		switch {
		case s.skip != "" || s.do == nil:
			if s.skip == "" {
				s.skip = "nothing to do"
			}
			record(s.stage, start, "skipped: "+s.skip)
			continue
		case s.wait <= 0:
			record(s.stage, start, "skipped: no time allowed")
			continue
		case ctx.Err() != nil && s.stage != StopTerm:
			// Interrupted: skip the polite stages, but still terminate and reap.
			record(s.stage, start, "skipped: interrupted")
			continue
		}
		sctx, cancel := context.WithTimeout(context.Background(), s.wait)
		err := s.do(sctx)
		cancel()
		if s.noExit {
			if err != nil {
				record(s.stage, start, "failed: "+err.Error())
			} else {
				record(s.stage, start, "done")
			}
			continue
		}
		if err != nil {
			// The command never reached the guest (or QEMU): nothing to wait for.
			m.log.Warn("qemu.stop_stage_failed", "stage", string(s.stage), "error", err.Error())
			if m.waitExit(0) {
				record(s.stage, start, "QEMU exited")
				rep.Stage = s.stage
				return rep, nil
			}
			record(s.stage, start, "failed: "+err.Error())
			continue
		}
		ended, exited := m.waitStage(s.wait-time.Since(start), s.polite, s.stage, plan.Watch)
		record(s.stage, start, ended)
		if exited {
			m.log.Info("qemu.stopped", "stage", string(s.stage))
			rep.Stage = s.stage
			return rep, nil
		}
	}
	start := time.Now()
	m.Kill()
	if m.waitExit(t.Kill) {
		record(StopKill, start, "QEMU exited")
		rep.Stage = StopKill
		return rep, nil
	}
	record(StopKill, start, "QEMU survived it")
	rep.Stage = StopKill
	return rep, fmt.Errorf("QEMU pid %d survived SIGKILL for %s", m.Pid(), t.Kill)
}

// waitStage waits for QEMU to exit within d, or, for a polite stage with a watcher, for
// the guest to show it will not act. It says why the wait ended and whether QEMU exited.
func (m *Machine) waitStage(d time.Duration, polite bool, stage StopStage, watch func(context.Context, StopStage) string) (string, bool) {
	if d < 0 {
		d = 0
	}
	refused := make(chan string, 1)
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if polite && watch != nil {
		go func() { refused <- watch(wctx, stage) }()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-m.exited:
			return "QEMU exited", true
		case <-timer.C:
			return "timed out after " + d.Round(time.Millisecond).String(), false
		case why := <-refused:
			if why == "" {
				continue // the watcher gave up: wait out the stage
			}
			// The guest may have exited while the watcher decided.
			if m.waitExit(0) {
				return "QEMU exited", true
			}
			return "refused: " + why, false
		}
	}
}

// Kill sends SIGKILL to QEMU's process group.
func (m *Machine) Kill() {
	_ = m.proc.Signal(syscall.SIGKILL)
}

func (m *Machine) waitExit(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-m.exited:
			return true
		default:
			return false
		}
	}
	select {
	case <-m.exited:
		return true
	case <-time.After(d):
		return false
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
