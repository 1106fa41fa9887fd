// Package vmprobe is the VM side of `bootlab bisect`: a bisect.Prober that boots each
// candidate in a lab (one run directory per probe, inside the probe's directory), logs
// in with an image profile and judges the guest with the bisection's predicate.
//
// Verdicts follow harness/bisect: an image that cannot be booted or logged into is
// Skip (infrastructure, says nothing about the behaviour under test); only the
// predicate can say Bad.
//
// The three predicate kinds:
//
//   - expect script: bisect.RunScript over the lab's console (send/expect) and framed
//     shell (run/assert-output). An expect looks at console text from the latest send,
//     run or match onwards, never at older output.
//   - host command: bisect.RunHostCommand with BOOTLAB_SSH_PORT (guest port 22 is
//     always forwarded for command predicates), BOOTLAB_CONSOLE_SOCKET (the lab's
//     console served on a unix socket, as for `bootlab attach`), BOOTLAB_QMP_SOCKET and
//     BOOTLAB_RUN_DIR.
//   - scenario: no VM is booted here; the probe runs
//     `go test -count=1 -run '^NAME$' ./scenarios -args -notes PROBEDIR` with -kernel,
//     -initrd and -append (kernel candidates) or -iso (ISO candidates), from the
//     working directory (run `bootlab bisect --scenario` from the checkout). The test
//     passing is Good. The test failing is Bad, unless one of the run directories it
//     left never reached a root shell (then the VM, not the behaviour, failed: Skip).
//     A build failure, a skipped test or a test that never ran is Skip.
package vmprobe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bootlab/bootlab/artifacts/cacheprune"
	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/bisect"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/dialog"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
)

// Prober boots candidates for bisect.Run / bisect.Main. The zero value boots with the
// mini profile; set fields before the bisection starts.
type Prober struct {
	// Profile is how the candidate's console logs in; the zero value means shell.Mini.
	Profile shell.Profile
	// Poweroff is typed as root to stop the guest; empty means the profile's
	// (shell.Profile owns poweroff and ACPI behaviour).
	Poweroff string
	// MemoryMB of each guest; 0 means 512.
	MemoryMB int
	// Accel is kvm or tcg; empty probes with the first candidate booted (cached in
	// Config.Cache), falling back to TCG when KVM hangs, and keeps that choice for
	// every later candidate: each probe then runs under the same conditions, and the
	// probe cache, keyed by kernel path, would otherwise cost a 20 s test boot for
	// every new candidate.
	Accel string
	// LoginTimeout bounds boot + login; 0 means the harness default (scaled by
	// Config.TimeoutScale).
	LoginTimeout time.Duration
	// Config is the configuration every probe's lab starts with (cache, QEMU, timeout
	// scale; Accel above wins over its Accel). Its Notes is replaced by each probe's
	// run directory.
	Config config.Config
	// SSH forwards guest port 22 for script predicates too (command predicates always
	// get it).
	SSH bool
	// ScenarioPkg is the package `--scenario` runs; empty means ./scenarios.
	ScenarioPkg string
	// Progress receives the labs' boot milestones (optional).
	Progress io.Writer

	inner bisect.VMProber
	pred  *bisect.Predicate

	mu    sync.Mutex
	accel string // the accelerator the first boot settled on
}

var (
	_ bisect.Prober          = (*Prober)(nil)
	_ bisect.PredicateUser   = (*Prober)(nil)
	_ bisect.Booter          = (*Prober)(nil)
	_ bisect.VerdictRecorder = (*guest)(nil)
)

var scenarioName = regexp.MustCompile(`^Test[A-Za-z0-9_]*$`)

// UsePredicate implements bisect.PredicateUser. A scenario name is checked against the
// scenario sources here, so a typo is a usage error instead of a run of skips.
func (p *Prober) UsePredicate(pred *bisect.Predicate) error {
	if pred == nil {
		return errors.New("no predicate")
	}
	if pred.Kind == bisect.PredicateScenario {
		if err := p.checkScenario(pred.Scenario); err != nil {
			return err
		}
		p.pred = pred
		return nil
	}
	p.inner = bisect.VMProber{Boot: p}
	if err := p.inner.UsePredicate(pred); err != nil {
		return err
	}
	p.pred = pred
	return nil
}

// Probe implements bisect.Prober.
func (p *Prober) Probe(ctx context.Context, c bisect.Candidate, attempt int, runDir string) (bisect.Outcome, error) {
	if p.pred == nil {
		return bisect.Outcome{}, fmt.Errorf("vmprobe: no predicate: %w", bisect.ErrAbort)
	}
	// A host without QEMU fails every candidate the same way: stop instead of
	// skipping the whole list.
	if err := lab.CheckQEMU(p.Config.QEMU); err != nil {
		return bisect.Outcome{}, fmt.Errorf("%w: %w", err, bisect.ErrAbort)
	}
	if p.pred.Kind == bisect.PredicateScenario {
		return p.probeScenario(ctx, c, attempt, runDir)
	}
	// The lab's own run directory comes back through bisect.Evidence (guest and
	// bisect.BootError carry it).
	return p.inner.Probe(ctx, c, attempt, runDir)
}

// reportPath names the lab directory relative to the bisect directory when runDir has
// the engine's DIR/probes/NAME layout, so a moved bisect directory keeps its links.
func reportPath(runDir, labDir string) string {
	probes := filepath.Dir(runDir)
	if filepath.Base(probes) != "probes" {
		return labDir
	}
	base, err := filepath.Abs(filepath.Dir(probes))
	if err != nil {
		return labDir
	}
	abs, err := filepath.Abs(labDir)
	if err != nil {
		return labDir
	}
	rel, err := filepath.Rel(base, abs)
	if err != nil || strings.HasPrefix(rel, "..") {
		return labDir
	}
	return rel
}

// DownloadDir implements bisect.Downloader: url= candidates go into the image cache.
func (p *Prober) DownloadDir() string { return cacheprune.DownloadDir(p.cfg().Cache) }

// cfg is Config with its zero values defaulted (a zero Prober still boots).
func (p *Prober) cfg() config.Config {
	c := p.Config
	if c.TimeoutScale <= 0 {
		c.TimeoutScale = 1
	}
	if c.Cache == "" {
		c.Cache = config.DefaultCache()
	}
	return c
}

func (p *Prober) accelerator() string {
	if p.Accel != "" {
		return p.Accel
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accel
}

func (p *Prober) settleAccel(a string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.accel == "" {
		p.accel = a
	}
}

// CheckCandidates implements bisect.CandidateChecker: every profile= names a known
// image profile, so a typo is a usage error before the first boot.
func (p *Prober) CheckCandidates(cs []bisect.Candidate) error {
	for _, c := range cs {
		if c.Profile == "" {
			continue
		}
		if _, err := shell.ByName(c.Profile); err != nil {
			return fmt.Errorf("candidate %s: %w", c.Name, err)
		}
	}
	return nil
}

func (p *Prober) profile() shell.Profile {
	if p.Profile.Name == "" {
		return shell.Mini
	}
	return p.Profile
}

// Boot implements bisect.Booter: start a lab in runDir and get a verified root shell.
// Any failure closes the lab (its run directory records why) and is returned, which
// bisect.VMProber turns into Skip.
func (p *Prober) Boot(ctx context.Context, c bisect.Candidate, runDir string) (bisect.VM, error) {
	for _, f := range []string{c.ISO, c.Kernel, c.Initrd} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("candidate %s: image file missing: %w", c.Name, err)
		}
	}
	prof := p.profile()
	if c.Profile != "" {
		// The candidate's own profile (profile= in the list): a foreign ISO in a
		// list of another kind logs in and powers off its own way.
		var err error
		if prof, err = shell.ByName(c.Profile); err != nil {
			return nil, fmt.Errorf("candidate %s: %w: %w", c.Name, err, bisect.ErrAbort)
		}
	}
	mem := memoryFor(p.MemoryMB, prof)
	// Timeouts not set here are the harness's, scaled by Config.TimeoutScale (lab.Start).
	spec := lab.Spec{
		Image: lab.Image{Name: c.Name, ISO: c.ISO, Kernel: c.Kernel, Initrd: c.Initrd, Append: c.Append,
			Profile: prof, Poweroff: p.Poweroff},
		MemoryMB: mem,
		SSH:      p.SSH || p.pred.Kind == bisect.PredicateCommand,
		Accel:    p.accelerator(),
	}
	if c.ISO != "" {
		// The same choice as `bootlab run --iso`: an upstream ISO whose entry has no
		// serial console boots that entry directly.
		if _, err := lab.ResolveISOBoot(ctx, images.Cache(p.cfg().Cache), &spec.Image, c.Boot, c.Entry); err != nil {
			return nil, fmt.Errorf("candidate %s: %w", c.Name, err)
		}
	}
	if p.LoginTimeout > 0 {
		spec.Timeouts.Login = p.LoginTimeout
	}
	cfg := p.cfg()
	cfg.Notes = runDir
	l, err := lab.Start(ctx, cfg, lab.Slug("bisect-"+c.Name), lab.Machine(spec), lab.Progress(p.Progress))
	if err != nil {
		var se *lab.StartError
		if !errors.As(err, &se) {
			return nil, brief(fmt.Errorf("starting %s: %w", c.Name, err))
		}
		return nil, &bisect.BootError{Err: brief(fmt.Errorf("starting %s: %w", c.Name, se.Err)), Dir: reportPath(runDir, se.Dir)}
	}
	p.settleAccel(l.Accel())
	if err := login(ctx, l, prof, p.cfg().TimeoutScale); err != nil {
		closeLab(ctx, l, err)
		return nil, &bisect.BootError{Err: brief(fmt.Errorf("logging in to %s: %w", c.Name, err)), Dir: reportPath(runDir, l.Dir())}
	}
	g := &guest{l: l, pos: l.ConsoleMark(), dir: reportPath(runDir, l.Dir()), cache: images.Cache(cfg.Cache)}
	if p.pred.Kind == bisect.PredicateCommand {
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		sock, err := l.ServeConsole(sctx)
		if err != nil {
			cancel()
			closeLab(ctx, l, err)
			return nil, fmt.Errorf("serving the console of %s: %w", c.Name, err)
		}
		g.sock, g.stopServe = sock, cancel
	}
	return g, nil
}

// installerMemoryMB is what Debian's installer is given unless --memory says otherwise:
// below ~737 MiB it enters its low-memory mode, whose dialogs the walk to its shell does
// not know.
const installerMemoryMB = 1024

// memoryFor is the guest memory for a candidate booted with prof when the prober was
// given set (0: not set).
func memoryFor(set int, prof shell.Profile) int {
	switch {
	case set > 0:
		return set
	case prof.Name == shell.DebianInstaller.Name:
		return installerMemoryMB
	}
	return 512
}

// login gets the lab's verified root shell. Debian's installer has nothing to log in
// to: its dialogs are walked to "Execute a shell" and that shell is taken over, the
// boot up to the first dialog bounded like a login (the lab's own login bound, its
// defaults filled in: a spec's zero timeout means "the harness's", not "none").
func login(ctx context.Context, l *lab.Lab, prof shell.Profile, scale float64) error {
	if prof.Name != shell.DebianInstaller.Name {
		_, err := l.Login(ctx)
		return err
	}
	step := time.Duration(float64(30*time.Second) * scale)
	_, err := dialog.New(l, step).TakeDebianInstallerShell(ctx, l.LoginTimeout(), step)
	return err
}

// EvidenceDir implements bisect.Evidence.
func (g *guest) EvidenceDir() string { return g.dir }

// closeLab stops a lab that failed before the predicate ran, even when ctx is done:
// leaving QEMU behind is worse than a slower Ctrl-C.
func closeLab(ctx context.Context, l *lab.Lab, cause error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	_ = l.Close(cctx, cause)
}

// guest is a logged-in lab as bisect.VM.
type guest struct {
	l         *lab.Lab
	dir       string // the lab's run directory, as the bisect report links it
	pos       int64  // where the next expect starts looking
	sock      string
	stopServe context.CancelFunc
	cache     images.Cache // where the image root key is
}

// briefError keeps an error's first line as its message: verdict reasons are one line
// in bisect.jsonl and the report, while the console tail that harness errors carry is
// already in the lab's serial.log and diagnostics.
type briefError struct {
	msg string
	err error
}

func (e *briefError) Error() string { return e.msg }
func (e *briefError) Unwrap() error { return e.err }

func brief(err error) error {
	if err == nil {
		return nil
	}
	msg, rest, multi := strings.Cut(err.Error(), "\n")
	if !multi {
		return err
	}
	msg = strings.TrimSuffix(strings.TrimSpace(msg), ":")
	msg = strings.TrimSuffix(msg, "; last console output")
	if strings.TrimSpace(rest) != "" {
		msg += " (console tail in the run directory's serial.log and diagnostics/)"
	}
	return &briefError{msg: msg, err: err}
}

// infra marks errors that come from the VM or its console going away, which make the
// candidate untestable rather than bad.
func (g *guest) infra(err error) error {
	if err == nil {
		return nil
	}
	if lab.ConsoleGone(err) || g.l.ConsoleErr() != nil || !g.l.Running() {
		return brief(fmt.Errorf("%w: %w", bisect.ErrInfra, err))
	}
	return brief(err)
}

func (g *guest) Send(ctx context.Context, text string) error {
	// Output caused by what is sent comes after this point; older text must not
	// satisfy the next expect.
	pos, err := g.l.Type(ctx, text)
	g.pos = pos
	return g.infra(err)
}

func (g *guest) Expect(ctx context.Context, re *regexp.Regexp) error {
	_, end, err := g.l.ExpectConsole(ctx, g.pos, re)
	if err != nil {
		return g.infra(err)
	}
	g.pos = end
	return nil
}

func (g *guest) Run(ctx context.Context, cmd string) ([]byte, int, error) {
	r, err := g.l.Run(ctx, cmd, shell.AllowFail())
	g.pos = g.l.ConsoleMark()
	if err != nil {
		return nil, 0, g.infra(err)
	}
	return r.Output, r.ExitStatus, nil
}

func (g *guest) Env() bisect.VMEnv {
	env := bisect.VMEnv{SSHPort: g.l.SSHPort(), ConsoleSocket: g.sock}
	if env.SSHPort != 0 {
		env.SSHUser = "root"
		// bootlab-built images (the fixture ISO) trust this key; other images
		// ignore it.
		if k, err := g.cache.RootKey(); err == nil {
			env.SSHKey = k.PrivatePath
		}
	}
	env.QMPSocket = g.l.QMPSocket()
	return env
}

// RecordVerdict implements bisect.VerdictRecorder: the lab's run record carries the
// predicate's verdict and steps, and the lab stops the guest without waiting for a
// poweroff it may never honour.
func (g *guest) RecordVerdict(out bisect.Outcome, predicate string) error {
	return g.l.SetVerdict(runrec.Verdict{Verdict: string(out.Verdict), Reason: out.Reason, Predicate: predicate,
		FailedStep: out.FailedStep, Steps: out.Steps})
}

func (g *guest) Close(ctx context.Context) error {
	if g.stopServe != nil {
		g.stopServe()
	}
	return g.l.Close(ctx, nil)
}

// --- scenario predicate ---

func (p *Prober) scenarioPkg() string {
	if p.ScenarioPkg == "" {
		return "./scenarios"
	}
	return p.ScenarioPkg
}

func (p *Prober) checkScenario(name string) error {
	if !scenarioName.MatchString(name) {
		return fmt.Errorf("scenario %q: want a test function name like TestCleanDisk", name)
	}
	files, err := filepath.Glob(filepath.Join(p.scenarioPkg(), "*_test.go"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no scenario sources in %s (run bootlab bisect --scenario from the bootlab checkout)", p.scenarioPkg())
	}
	decl := regexp.MustCompile(`(?m)^func ` + name + `\(t \*testing\.T\)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("reading scenario sources: %w", err)
		}
		if decl.Match(b) {
			return nil
		}
	}
	return fmt.Errorf("no scenario %s in %s", name, p.scenarioPkg())
}

type testEvent struct {
	Action string
	Test   string
	Output string
}

func (p *Prober) probeScenario(ctx context.Context, c bisect.Candidate, attempt int, runDir string) (bisect.Outcome, error) {
	start := time.Now()
	name := p.pred.Scenario
	args := []string{"test", "-json", "-count=1", "-timeout=60m", "-run", "^" + name + "$", p.scenarioPkg(), "-args", "-notes", runDir}
	if c.ISO != "" {
		args = append(args, "-iso", c.ISO)
		if c.Profile != "" {
			args = append(args, "-profile", c.Profile)
		}
		if c.Entry != "" {
			args = append(args, "-entry", c.Entry)
		}
		if c.Boot != "" {
			args = append(args, "-boot", c.Boot)
		}
	} else {
		args = append(args, "-kernel", c.Kernel, "-initrd", c.Initrd, "-append", c.Append)
	}
	if p.Accel != "" {
		args = append(args, "-accel", p.Accel)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	// Its own process group: on a probe timeout or Ctrl-C the test binary (and the
	// QEMU it started) must go too, not only the go command in front of it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return bisect.Outcome{}, fmt.Errorf("scenario %s on %s: %w", name, c.Name, ctx.Err())
	}
	var text strings.Builder
	verdict := ""
	for _, line := range strings.Split(stdout.String(), "\n") {
		var ev testEvent
		if json.Unmarshal([]byte(line), &ev) != nil {
			if line != "" {
				text.WriteString(line + "\n")
			}
			continue
		}
		text.WriteString(ev.Output)
		if ev.Test == name && (ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip") {
			verdict = ev.Action
		}
	}
	text.WriteString(stderr.String())
	if err := os.WriteFile(filepath.Join(runDir, "scenario.log"), []byte(text.String()), 0o644); err != nil {
		return bisect.Outcome{}, fmt.Errorf("saving scenario output: %w", err)
	}
	out := bisect.Outcome{Duration: time.Since(start)}
	switch verdict {
	case "pass":
		out.Verdict, out.Reason = bisect.Good, "scenario "+name+" passed"
	case "fail":
		if dir, why := untestedRun(runDir); dir != "" {
			out.Verdict, out.Reason = bisect.Skip, fmt.Sprintf("scenario %s failed, but its VM %s (%s)", name, why, dir)
		} else {
			out.Verdict, out.Reason = bisect.Bad, "scenario "+name+" failed: "+lastMeaningful(text.String())
		}
	case "skip":
		out.Verdict, out.Reason = bisect.Skip, "scenario "+name+" skipped itself"
	default:
		out.Verdict = bisect.Skip
		out.Reason = fmt.Sprintf("scenario %s did not run (build failure or harness error: %v): %s", name, runErr, lastMeaningful(text.String()))
	}
	if err := bisect.WriteOutcome(runDir, c, attempt, out); err != nil {
		return bisect.Outcome{}, err
	}
	return out, nil
}

// untestedRun finds a run directory under dir whose VM never reached a root shell.
func untestedRun(dir string) (string, string) {
	metas, _ := filepath.Glob(filepath.Join(dir, "*", runrec.MetadataFile))
	for _, m := range metas {
		d := filepath.Dir(m)
		md, err := runrec.ReadMetadata(d)
		if err != nil {
			return d, "left no readable metadata.json"
		}
		if _, ok := md.Milestone("root_shell"); !ok {
			return d, "never reached a root shell"
		}
	}
	return "", ""
}

func lastMeaningful(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "FAIL") || strings.HasPrefix(l, "---") || strings.HasPrefix(l, "exit status") || l == "PASS" {
			continue
		}
		if len(l) > 200 {
			l = l[:200] + "..."
		}
		return l
	}
	return ""
}
