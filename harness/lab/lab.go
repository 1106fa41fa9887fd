// Package lab is what scenarios and the bootlab command use: one booted VM tied to one
// run directory. It records provenance before QEMU starts (so a QEMU that dies at once
// still leaves evidence), milestones as they happen, diagnostics and captures on
// failure, and on Close the outcome, the artefact catalogue, report.html and a ledger
// line. Whatever happens, Close leaves no QEMU running and a valid metadata.json.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bootlab/bootlab/artifacts/ansi"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/artifacts/progress"
	"github.com/bootlab/bootlab/artifacts/report"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// Options describe one run: what to boot and how the run is kept. Everything bootlab
// is configured with (notes, cache, accelerator, timeout scale, QEMU) comes from the
// config.Config given to Start instead, and every VM default is derived from it in one
// place (vmDefaults).
type Options struct {
	Slug string
	// Ledger is the JSONL ledger; empty means <notes>/ledger.jsonl, "-" none.
	Ledger string
	VM     vm.Spec
	// RootKeyFingerprint of the key embedded in the image, if any (recorded only).
	RootKeyFingerprint string
	Progress           io.Writer
	// KeepDisks leaves the disk images the VM created in the run directory when the
	// run closes. By default they go: a 4 GiB disk0.img per run fills the notes
	// directory and would ride along in every CI upload. Disks given by Path are
	// never touched.
	KeepDisks bool
	// Captures says when Close takes the boot evidence (default always).
	Captures CaptureMode
	// Variant, for StartWarm: the VM's image is Variant.Base's plus a few files, so a
	// warm start restores Base's saved guest and writes them into it (Variant).
	Variant *Variant
	// BeforeRelease, for StartWarm: runs in a restored guest once its disks and a
	// variant's files are in place, just before its default target starts (what the
	// provisioner will meet, looked at before it runs).
	BeforeRelease func(ctx context.Context, l *Lab) error

	conf config.Config // the run's configuration, from Start
}

// Option sets one of a run's Options.
type Option func(*Options)

// With sets every Option at once (a caller that builds Options up, as labtest does).
func With(o Options) Option { return func(t *Options) { conf := t.conf; *t = o; t.conf = conf } }

// Slug names the run directory (<notes>/<UTC time>-<slug>).
func Slug(s string) Option { return func(o *Options) { o.Slug = s } }

// Machine is the VM to boot.
func Machine(spec vm.Spec) Option { return func(o *Options) { o.VM = spec } }

// Ledger is the ledger the run appends to ("-": none).
func Ledger(path string) Option { return func(o *Options) { o.Ledger = path } }

// Progress receives the run's progress lines.
func Progress(w io.Writer) Option { return func(o *Options) { o.Progress = w } }

// KeepDisks keeps the disk images the run created.
func KeepDisks(keep bool) Option { return func(o *Options) { o.KeepDisks = keep } }

// Captures says when Close takes the boot evidence.
func Captures(m CaptureMode) Option { return func(o *Options) { o.Captures = m } }

// RootKeyFingerprint records the fingerprint of the image's embedded root key.
func RootKeyFingerprint(fp string) Option { return func(o *Options) { o.RootKeyFingerprint = fp } }

// fillTimeouts is t with every bound it leaves zero taken from base, so a caller sets
// only what it overrides (a login bound of its own) and keeps the scaled rest.
func fillTimeouts(t, base vm.Timeouts) vm.Timeouts {
	for _, f := range []struct{ v, b *time.Duration }{
		{&t.Login, &base.Login}, {&t.Step, &base.Step}, {&t.Command, &base.Command},
		{&t.Probe, &base.Probe}, {&t.NoSerial, &base.NoSerial},
	} {
		if *f.v == 0 {
			*f.v = *f.b
		}
	}
	if t.Stop == (qemu.StopTimeouts{}) {
		t.Stop = base.Stop
	}
	if t.Scale == 0 {
		t.Scale = base.Scale
	}
	return t
}

func options(cfg config.Config, opts []Option) Options {
	var o Options
	for _, f := range opts {
		f(&o)
	}
	o.conf = cfg
	o.VM = vmDefaults(cfg, o.VM)
	return o
}

// vmDefaults fills what spec leaves unsaid from cfg: the one place the VM defaults are
// derived (timeouts scaled by cfg.TimeoutScale, the accelerator, the QEMU binary, the
// accelerator probe's kernel and verdict cache in cfg.Cache).
func vmDefaults(cfg config.Config, spec vm.Spec) vm.Spec {
	spec.Timeouts = fillTimeouts(spec.Timeouts, vm.BaseTimeouts().Scaled(cfg.TimeoutScale))
	if spec.Accel == "" {
		spec.Accel = cfg.Accel
	}
	if spec.Binary == "" {
		spec.Binary = cfg.QEMU
	}
	if spec.ProbeKernel == "" {
		spec.ProbeKernel = spec.Image.Kernel
	}
	if spec.ProbeCache == "" && cfg.Cache != "" {
		spec.ProbeCache = filepath.Join(cfg.Cache, "accel-probe.json")
	}
	return spec
}

// Lab is a run in progress.
type Lab struct {
	// rec and vm are the run record and the VM: unexported, so scenarios and commands
	// say what they mean through the Lab's methods instead of reaching into either.
	rec  *runrec.Run
	vm   *vm.VM
	cfg  Options
	log  *slog.Logger
	line *progress.Line // Options.Progress as a line the waits report on; nil discards

	mu     sync.Mutex
	closed bool
	diags  []string
	// adopted is set when the lab already holds a verified root shell it took over from
	// a restored guest (StartWarm): Login returns that shell instead of logging in.
	adopted bool
	// evidenceTaken is set once Evidence ran, so Close does not replace evidence a test
	// took at the moment that mattered.
	evidenceTaken bool
	// stopRecorded is set once the stop's stages are in the run record (PowerOff,
	// then Close, stop once).
	stopRecorded bool
}

// Start creates the run directory under cfg.Notes (failing before any boot when it
// cannot be written), records the image, and starts the VM opts describe, its defaults
// derived from cfg. It is the one way a VM is started. On failure it returns nil: the
// failure is already recorded (a diagnostic, metadata.json, report.html, the ledger).
func Start(ctx context.Context, cfg config.Config, opts ...Option) (*Lab, error) {
	return start(ctx, options(cfg, opts))
}

func start(ctx context.Context, o Options) (*Lab, error) {
	if o.Slug == "" {
		o.Slug = "run"
	}
	notes := o.conf.Notes
	run, err := runrec.Create(notes, o.Slug, time.Now())
	if err != nil {
		return nil, fmt.Errorf("creating the run directory under %s (before booting anything): %w", notes, err)
	}
	if err := run.SetImage(imageRecord(ctx, o)); err != nil {
		return nil, fmt.Errorf("recording the image: %w", err)
	}
	spec := o.VM
	if spec.QuickStop == "" {
		spec.QuickStop = quickStopReason(o)
	}
	spec.Progress = o.Progress
	spec.OnMilestone = func(name string, at time.Time) { _ = run.Milestone(name, at) }
	// Until the VM is up the run is a starting one: an interruption (InterruptAll) then
	// records it as interrupted, with no VM to stop (QEMU dies with the process).
	starting := &Lab{rec: run, cfg: o, log: slog.New(slog.DiscardHandler)}
	registerStarting(starting)
	v, err := vm.Start(ctx, run.Dir, spec)
	unregisterStarting(starting)
	interrupted := !starting.markClosed()
	if err != nil {
		if !interrupted {
			if v != nil {
				starting.log = v.Log()
			}
			starting.diagnoseStart(v, err)
			_ = starting.finish(outcomeOf(ctx, err), err)
		}
		return nil, &StartError{Dir: run.Dir, Err: err}
	}
	if interrupted {
		cctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _ = v.Stop(cctx)
		return nil, &StartError{Dir: run.Dir, Err: fmt.Errorf("interrupted while starting: %w", context.Canceled)}
	}
	l := &Lab{rec: run, vm: v, cfg: o, log: v.Log()}
	if o.Progress != nil {
		l.line = progress.For(o.Progress)
	}
	register(l)
	_ = run.SetQEMU(runrec.QEMU{Argv: v.QEMUArgv(), Version: v.QEMUVersion(), PID: v.Pid()})
	_ = run.SetAccel(v.Accel().Accel, v.Accel().Reason)
	return l, nil
}

// StartError is a VM that did not start after its run directory was made: the failure
// is recorded there (Start returns no Lab to ask).
type StartError struct {
	Dir string
	Err error
}

func (e *StartError) Error() string { return fmt.Sprintf("%v (run directory %s)", e.Err, e.Dir) }
func (e *StartError) Unwrap() error { return e.Err }

// imageRecord describes the image for metadata.json: checksum, size, the embedded root
// key's fingerprint and Nix store provenance where they can be read. An image that
// cannot be inspected is still recorded by path; the boot decides whether it works.
func imageRecord(ctx context.Context, cfg Options) runrec.Image {
	img := cfg.VM.Image
	var (
		rec runrec.Image
		err error
	)
	if img.ISO != "" {
		rec, err = isoinspect.Provenance(ctx, img.ISO)
		if err != nil {
			rec = runrec.Image{Kind: "iso", Path: img.ISO}
		}
		rec.Boot, rec.Entry, rec.Append = "firmware", img.Entry, img.EntryCmdline
		if img.Kernel != "" {
			rec.Boot, rec.Entry, rec.Kernel, rec.Initrd, rec.Append = "direct", img.Entry, img.Kernel, img.Initrd, img.Append
		}
	} else {
		rec, err = isoinspect.KernelProvenance(ctx, img.Kernel, img.Initrd, img.Append)
		if err != nil {
			rec = runrec.Image{Kind: "kernel", Path: img.Kernel, Initrd: img.Initrd, Append: img.Append}
		}
	}
	rec.Profile = img.Profile.Name
	if rec.RootKeyFingerprint == "" {
		rec.RootKeyFingerprint = cfg.RootKeyFingerprint
	}
	return rec
}

// Dir is the run directory.
func (l *Lab) Dir() string { return l.rec.Dir }

// Login gets a verified root shell; a failure leaves a diagnostic.
func (l *Lab) Login(ctx context.Context) (*shell.Shell, error) {
	if l.adopted && l.vm.Shell() != nil {
		return l.vm.Shell(), nil
	}
	sh, err := l.vm.Login(ctx)
	if err != nil {
		l.diagnose("login", "logging in and becoming root", err, escalationContext(sh, l.vm))
		return nil, err
	}
	rec := runrec.Shell{UID: sh.UID(), Transport: sh.Transport(), ChannelStatus: sh.ChannelStatus()}
	for _, a := range sh.Attempts {
		if a.OK {
			rec.Escalation = string(a.Method)
		}
	}
	if err := l.rec.SetShell(rec); err != nil {
		l.vm.Log().Warn("lab.metadata", "error", err.Error())
	}
	return sh, nil
}

func escalationContext(sh *shell.Shell, v *vm.VM) string {
	if sh == nil {
		return ""
	}
	var b strings.Builder
	for _, a := range sh.Attempts {
		fmt.Fprintf(&b, "%s: ok=%v %s\n%s\n", a.Method, a.OK, a.Reason, a.Transcript)
	}
	return b.String()
}

// Mark records a milestone reached now (storage_status, ipv4, ssh, ...).
func (l *Lab) Mark(name string) { l.vm.Mark(name) }

// Run runs a framed command; a failure leaves a diagnostic naming the command.
func (l *Lab) Run(ctx context.Context, cmd string, opts ...shell.RunOption) (shell.Result, error) {
	r, err := l.vm.Run(ctx, cmd, opts...)
	if err != nil {
		var ee *shell.ExitError
		if !errors.As(err, &ee) {
			l.diagnose("command", fmt.Sprintf("running %q", cmd), err, "")
		}
	}
	return r, err
}

// Diagnose writes diagnostics/NN-slug.txt with the failure, the serial tail, the
// transcript's end and QEMU's state; it returns the file's path.
func (l *Lab) Diagnose(slug, summary string, err error, context string) string {
	return l.diagnose(slug, summary, err, context)
}

func (l *Lab) diagnose(slug, summary string, err error, extra string) string {
	return l.writeDiagnostic(slug, summary, err, extra, l.vm.QEMUState())
}

// diagnoseStart is the diagnostic of a VM that did not start; v is what vm.Start
// returned with its error (nil when it failed before QEMU).
func (l *Lab) diagnoseStart(v *vm.VM, err error) {
	state := ""
	if v != nil {
		state = v.QEMUState()
	}
	l.writeDiagnostic("qemu-start", "starting the VM", err, "", state)
}

func (l *Lab) writeDiagnostic(slug, summary string, err error, extra, qemuState string) string {
	f := runrec.Failure{Summary: summary, Context: extra, At: time.Now(), QEMUExit: qemuState}
	if err != nil {
		f.Summary = summary + ": " + err.Error()
	}
	f.SerialTail, _ = runrec.TailFile(l.rec.Path(vm.SerialLog), 60, ansi.Normalize)
	f.Transcript, _ = runrec.TailFile(l.rec.Path(vm.TranscriptLog), 40, nil)
	path, werr := l.rec.Diagnostic(slug, runrec.FailureBody(f))
	if werr != nil {
		l.log.Error("lab.diagnostic_failed", "error", werr.Error())
		return ""
	}
	l.mu.Lock()
	l.diags = append(l.diags, path)
	l.mu.Unlock()
	return path
}

// Diagnostics lists the diagnostic files written so far.
func (l *Lab) Diagnostics() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.diags...)
}

// Scenario records a scenario's outcome in metadata.json. A closed run's record is
// final: a verdict that comes after Close is not written.
func (l *Lab) Scenario(name string, outcome runrec.Outcome, err error, d time.Duration) {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return
	}
	s := runrec.Scenario{Name: name, Outcome: outcome, Duration: runrec.Seconds(d)}
	if err != nil {
		s.Error = err.Error()
	}
	_ = l.rec.Scenario(s)
}

// Close stops the VM (bounded, always reaped), records the outcome (err nil means
// pass), writes report.html and appends the ledger. Safe to call twice.
func (l *Lab) Close(ctx context.Context, err error) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	defer unregister(l)
	l.closeEvidence(ctx, err)
	stopStart := time.Now()
	stage, stopErr := l.vm.Stop(ctx)
	l.recordStop(stopStart)
	q := l.rec.Metadata().QEMU
	q.ExitStatus = l.vm.ExitStatus() + " (" + string(stage) + ")"
	_ = l.rec.SetQEMU(q)
	if !l.cfg.KeepDisks {
		for _, p := range createdDisks(l.rec.Dir, l.cfg.VM.Disks) {
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				l.log.Warn("lab.disk_not_removed", "path", p, "err", rerr)
			}
		}
	}
	outcome := runrec.Pass
	if err != nil {
		outcome = outcomeOf(ctx, err)
	}
	verdictErr := err
	if v := l.rec.Metadata().Verdict; err == nil && v != nil {
		// A boot that passed and a predicate that judged the image bad is a bad run,
		// not a pass: the ledger and trend must say so, with the step.
		if outcome = runrec.OutcomeWithVerdict(outcome, v); outcome != runrec.Pass {
			verdictErr = fmt.Errorf("predicate verdict %s: %s", v.Verdict, v.Reason)
		}
	}
	return errors.Join(stopErr, l.finish(outcome, verdictErr))
}

// createdDisks are the disk images vm.VM made in dir for disks (the ones without a
// Path), named as vm.VM names them.
func createdDisks(dir string, disks []vm.DiskSpec) []string {
	var out []string
	for i, d := range disks {
		if d.Path != "" {
			continue
		}
		name := d.Name
		if name == "" {
			name = fmt.Sprintf("disk%d.img", i)
		}
		out = append(out, filepath.Join(dir, name))
	}
	return out
}

func outcomeOf(ctx context.Context, err error) runrec.Outcome {
	if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
		return runrec.Interrupted
	}
	var se *qemu.StartError
	if errors.As(err, &se) {
		return runrec.Error // QEMU never ran a guest: the environment failed, not the image
	}
	return runrec.Fail
}

func (l *Lab) finish(outcome runrec.Outcome, err error) error {
	text := ""
	if err != nil {
		text = err.Error()
	}
	ferr := l.rec.Finish(outcome, text, time.Now())
	ledger := l.cfg.Ledger
	if ledger == "" {
		ledger = runrec.DefaultLedger(l.cfg.conf.Notes)
	}
	l.writeDiff(ledger)
	rerr := writeReport(l.rec)
	if _, cerr := l.rec.Catalogue(); cerr != nil { // report.html joins the catalogue
		ferr = errors.Join(ferr, cerr)
	}
	if l.cfg.Ledger != "-" {
		if lerr := runrec.AppendLedger(ledger, l.rec.LedgerEntry()); lerr != nil {
			ferr = errors.Join(ferr, lerr)
		}
	}
	return errors.Join(ferr, rerr)
}

// --- interruption: SIGINT/SIGTERM close every open lab before the process exits ---

var (
	activeMu sync.Mutex
	active   = map[*Lab]struct{}{}
	starting = map[*Lab]struct{}{} // runs whose VM is starting (no Lab returned yet)
	sigOnce  sync.Once
)

// markClosed claims l's one close; false when it was closed already.
func (l *Lab) markClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.closed = true
	return true
}

func registerStarting(l *Lab) {
	activeMu.Lock()
	starting[l] = struct{}{}
	activeMu.Unlock()
}

func unregisterStarting(l *Lab) {
	activeMu.Lock()
	delete(starting, l)
	activeMu.Unlock()
}

func register(l *Lab) {
	activeMu.Lock()
	active[l] = struct{}{}
	activeMu.Unlock()
}

func unregister(l *Lab) {
	activeMu.Lock()
	delete(active, l)
	activeMu.Unlock()
}

// HandleSignals makes SIGINT and SIGTERM stop every running VM, mark its run
// interrupted and flush its records before the process exits (status 130/143). Call
// it once from main or TestMain; QEMU would die with the process anyway (parent-death
// signal), but then metadata would still say "running".
func HandleSignals() {
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-ch
			InterruptAll(sig.String())
			code := 130
			if sig == syscall.SIGTERM {
				code = 143
			}
			os.Exit(code)
		}()
	})
}

// InterruptAll closes every open lab as interrupted, and records every run still
// starting its VM as interrupted.
func InterruptAll(why string) {
	activeMu.Lock()
	labs := make([]*Lab, 0, len(active))
	for l := range active {
		labs = append(labs, l)
	}
	pending := make([]*Lab, 0, len(starting))
	for l := range starting {
		pending = append(pending, l)
	}
	activeMu.Unlock()
	for _, l := range pending {
		if l.markClosed() {
			_ = l.finish(runrec.Interrupted, fmt.Errorf("interrupted by %s while starting the VM: %w", why, context.Canceled))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // interrupted: skip the polite shutdown stages
	var wg sync.WaitGroup
	for _, l := range labs {
		wg.Add(1)
		go func(l *Lab) {
			defer wg.Done()
			l.log.Warn("lab.interrupted", "signal", why)
			_ = l.Close(ctx, fmt.Errorf("interrupted by %s: %w", why, context.Canceled))
		}(l)
	}
	wg.Wait()
}

// writeReport renders report.html; it has its own short deadline because it also runs
// after an interruption, when the caller's context is already cancelled.
func writeReport(run *runrec.Run) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := report.Render(ctx, run.Dir, report.Options{})
	return err
}
