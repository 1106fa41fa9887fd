// Package cli implements the pre-nixos commands so they can be tested
// in-process; the binaries under provisioner/cmd only call into it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/bootlab/bootlab/provisioner/apply"
	"github.com/bootlab/bootlab/provisioner/boot"
	"github.com/bootlab/bootlab/provisioner/cleanup"
	"github.com/bootlab/bootlab/provisioner/console"
	"github.com/bootlab/bootlab/provisioner/detect"
	"github.com/bootlab/bootlab/provisioner/disko"
	"github.com/bootlab/bootlab/provisioner/execpolicy"
	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/logging"
	"github.com/bootlab/bootlab/provisioner/network"
	"github.com/bootlab/bootlab/provisioner/planner"
	"github.com/bootlab/bootlab/provisioner/sshd"
	"github.com/bootlab/bootlab/provisioner/status"
)

// Version is set at link time (-X) by the image and flake builds.
var Version = "0.1.0-dev"

// Exit codes of pre-nixos.
const (
	ExitOK       = 0
	ExitFailure  = 1
	ExitUsage    = 2
	ExitRefusing = 3 // existing storage and no force
)

// Env is the process environment of a command.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Runner runs commands; nil means this machine (os/exec).
	Runner execpolicy.Runner
	// Sleep is used between retries; nil means time.Sleep.
	Sleep func(time.Duration)
	// SysRoot and ProcRoot are this machine's own sysfs and procfs (default
	// /sys and /proc; tests point them at fake trees). Every safety decision
	// of an executing run (the boot medium, force, the disk gate's view)
	// reads them, never a described tree given with --sysfs/--proc.
	SysRoot, ProcRoot string
	// Exists and Realpath replace the /dev lookups of storage detection
	// (tests); nil means this machine.
	Exists   func(string) bool
	Realpath func(string) (string, error)
}

func (e *Env) defaults() {
	if e.Stdout == nil {
		e.Stdout = os.Stdout
	}
	if e.Stderr == nil {
		e.Stderr = os.Stderr
	}
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.Runner == nil {
		e.Runner = execpolicy.OS{}
	}
	if e.Sleep == nil {
		e.Sleep = time.Sleep
	}
	if e.SysRoot == "" {
		e.SysRoot = "/sys"
	}
	if e.ProcRoot == "" {
		e.ProcRoot = "/proc"
	}
}

type options struct {
	root, sysfs, proc, stateDir, logFile string
	backend, sshdUnits, keyFile, mode    string
	output, planFile, action             string
	planOnly, raid6                      bool
	sysfsSet, procSet                    bool
}

func envOr(getenv func(string) string, key, def string) string {
	if v := strings.TrimSpace(getenv(key)); v != "" {
		return v
	}
	return def
}

func newFlags(name string, env Env, o *options) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.StringVar(&o.root, "root", "/", "directory every file write (and the root key, sshd_config, logs) is resolved under")
	fs.StringVar(&o.sysfs, "sysfs", env.SysRoot, "a described machine's sysfs (block/ for disks, class/net/ for NICs), for planning only: a run that would execute refuses it")
	fs.StringVar(&o.proc, "proc", env.ProcRoot, "a described machine's procfs (meminfo, cmdline; defaults to --sysfs when only --sysfs is given), for planning only")
	fs.StringVar(&o.stateDir, "state-dir", status.Dir(env.Getenv), "state directory for storage-status, network-status, storage-plan.json ($PRE_NIXOS_STATE_DIR)")
	fs.StringVar(&o.logFile, "log-file", envOr(env.Getenv, "PRE_NIXOS_LOG_FILE", logging.DefaultFile), "structured log file, under --root ($PRE_NIXOS_LOG_FILE)")
	fs.StringVar(&o.backend, "apply-backend", envOr(env.Getenv, "PRE_NIXOS_APPLY_BACKEND", apply.Auto), "auto (disko when on PATH, else native), disko or native")
	fs.StringVar(&o.sshdUnits, "sshd-unit", envOr(env.Getenv, sshd.UnitEnv, strings.Join(sshd.DefaultUnits, ",")), "sshd unit name(s) to reload-or-restart, tried in order ($PRE_NIXOS_SSHD_UNIT)")
	fs.StringVar(&o.keyFile, "root-key-file", envOr(env.Getenv, sshd.KeyFileEnv, sshd.DefaultKeyFile), "embedded root public key, under --root ($PRE_NIXOS_ROOT_KEY_FILE)")
	fs.StringVar(&o.mode, "mode", "fast", "SSD RAID policy: fast or careful")
	fs.BoolVar(&o.raid6, "prefer-raid6-on-four", false, "use RAID6 instead of RAID5 for four HDDs")
	return fs
}

func (o *options) finish(fs *flag.FlagSet) error {
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "sysfs":
			o.sysfsSet = true
		case "proc":
			o.procSet = true
		}
	})
	// A described machine is one directory: --sysfs alone points at both.
	if o.sysfsSet && !o.procSet {
		o.proc = o.sysfs
	}
	if o.mode != string(planner.Fast) && o.mode != string(planner.Careful) {
		return fmt.Errorf("invalid --mode %q (want fast or careful)", o.mode)
	}
	if _, err := apply.Choose(o.backend, func(string) (string, error) { return "", errors.New("not needed") }); err != nil {
		return err
	}
	switch o.output {
	case "", "plan", "disko":
	default:
		return fmt.Errorf("invalid --output %q (want plan or disko)", o.output)
	}
	return nil
}

// described reports whether a described machine (--sysfs or --proc) was
// given: such a run plans, it never executes.
func (o *options) described() bool { return o.sysfsSet || o.procSet }

type session struct {
	env    Env
	opts   options
	root   execpolicy.Root
	exec   bool
	log    *slog.Logger
	closer io.Closer
	runner execpolicy.Runner
	// gate is the disk gate every command of this session passes.
	gate *execpolicy.Gate
}

func open(env Env, o options) *session {
	s := &session{env: env, opts: o, root: execpolicy.Root{Dir: o.root}, exec: execpolicy.ExecEnabled(env.Getenv)}
	if logging.Enabled(env.Getenv) {
		s.log, s.closer = logging.Open(env.Stderr, s.root.Path(o.logFile), slog.LevelInfo)
	} else {
		s.log, s.closer = logging.Discard(), io.NopCloser(nil)
	}
	// The gate traces devices through this machine's own sysfs, whatever
	// tree the plan was computed from.
	s.gate = execpolicy.NewGate(detect.OSStack(env.SysRoot, env.ProcRoot).Disks)
	// The gate sits inside the policy: a dry run skips commands before they
	// reach it, an executing run cannot bypass it.
	s.runner = execpolicy.Policy{Exec: s.exec, Inner: execpolicy.Gated{Gate: s.gate, Inner: env.Runner, Log: s.log}, Log: s.log}
	return s
}

func (s *session) units() []string {
	var out []string
	for _, u := range strings.Split(s.opts.sshdUnits, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func (s *session) bootConfig() boot.Config {
	return boot.Config{
		Root: s.root, SysfsRoot: s.opts.sysfs, ProcRoot: s.opts.proc, StateDir: s.opts.stateDir,
		Exec: s.exec, Runner: s.runner, Log: s.log, Stdout: s.env.Stdout, Getenv: s.env.Getenv,
		Backend: s.opts.backend, Planner: planner.Options{Mode: planner.Mode(s.opts.mode), PreferRAID6OnFour: s.opts.raid6},
		KeyFile: s.opts.keyFile, SSHDUnits: s.units(), Version: envOr(s.env.Getenv, "PRE_NIXOS_VERSION", Version), Gate: s.gate,
		Apply:   apply.Env{Sleep: s.env.Sleep},
		Network: network.Config{Sleep: s.env.Sleep},
	}
}

const usage = `usage: pre-nixos [COMMAND] [flags]

commands:
  plan      (default) print the storage plan; apply it unless --plan-only
  boot      the boot flow of pre-nixos.service
  network   configure the LAN, announce its IPv4, harden and start sshd
  cleanup   wipe existing storage: pre-nixos cleanup [--action A] DEVICE...
  notice    print the login notice from the status files
  version   print the version

Run "pre-nixos COMMAND -h" for the flags of a command.
`

// PreNixos is the pre-nixos command.
func PreNixos(ctx context.Context, args []string, env Env) int {
	env.defaults()
	cmd := "plan"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var o options
	fs := newFlags("pre-nixos "+cmd, env, &o)
	switch cmd {
	case "plan":
		fs.BoolVar(&o.planOnly, "plan-only", false, "print the plan and stop")
		fs.StringVar(&o.output, "output", "plan", "what to print: plan (JSON) or disko (Nix)")
		fs.StringVar(&o.planFile, "plan", "", "apply this plan JSON (e.g. a recorded storage-plan.json) instead of computing one")
	case "cleanup":
		fs.StringVar(&o.action, "action", envOr(env.Getenv, "PRE_NIXOS_FORCE_CLEANUP_ACTION", string(cleanup.WipeSignatures)), "wipe-signatures (1), discard (2), overwrite-random (3) or skip (s)")
	case "boot", "network", "notice":
	case "version":
		fmt.Fprintln(env.Stdout, Version)
		return ExitOK
	case "help":
		fmt.Fprint(env.Stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(env.Stderr, "pre-nixos: unknown command %q\n%s", cmd, usage)
		return ExitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if err := o.finish(fs); err != nil {
		fmt.Fprintf(env.Stderr, "pre-nixos: %v\n", err)
		return ExitUsage
	}
	if o.described() && execpolicy.ExecEnabled(env.Getenv) && !o.planOnly && cmd != "notice" {
		// A described tree is somebody's description of a machine, not this
		// one: it must never decide what this machine's disks may lose (its
		// cmdline could force, its block/ could hide the boot medium).
		fmt.Fprintf(env.Stderr, "pre-nixos %s: --sysfs/--proc describe a machine for planning only, and PRE_NIXOS_EXEC=1 would execute; add --plan-only (or unset PRE_NIXOS_EXEC) to plan it, or apply a saved plan on this machine with --plan FILE\n", cmd)
		return ExitUsage
	}
	if cmd != "cleanup" && fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "pre-nixos %s: unexpected arguments %q\n", cmd, fs.Args())
		return ExitUsage
	}
	if cmd == "notice" {
		// Runs from login shells as any user: no logging, no failures.
		s := &session{env: env, opts: o, root: execpolicy.Root{Dir: o.root}}
		fmt.Fprint(env.Stdout, status.Notice(s.readStatus(status.StorageFile), s.readStatus(status.NetworkFile), env.Getenv("PRE_NIXOS_VERSION")))
		return ExitOK
	}
	s := open(env, o)
	defer s.closer.Close()
	switch cmd {
	case "boot":
		out, err := boot.Run(ctx, s.bootConfig())
		if err != nil {
			fmt.Fprintf(env.Stderr, "pre-nixos: boot finished with errors (storage %s): %v\n", out.Storage.State(), err)
			return ExitFailure
		}
		return ExitOK
	case "network":
		if _, err := boot.RunNetwork(ctx, s.bootConfig()); err != nil {
			fmt.Fprintf(env.Stderr, "pre-nixos: %v\n", err)
			return ExitFailure
		}
		return ExitOK
	case "cleanup":
		return s.cleanup(ctx, fs.Args())
	}
	return s.plan(ctx)
}

// readStatus parses a status file; missing or broken files read as empty so
// a login notice never fails.
func (s *session) readStatus(name string) status.Status {
	b, err := s.root.ReadFile(s.opts.stateDir + "/" + name)
	if err != nil {
		return nil
	}
	st, err := status.Parse(strings.NewReader(string(b)))
	if err != nil {
		return nil
	}
	return st
}

func (s *session) fail(format string, a ...any) int {
	fmt.Fprintf(s.env.Stderr, "pre-nixos: "+format+"\n", a...)
	return ExitFailure
}

func (s *session) cleanup(ctx context.Context, devices []string) int {
	action, err := cleanup.ParseAction(s.opts.action)
	if err != nil {
		fmt.Fprintf(s.env.Stderr, "pre-nixos: %v\n", err)
		return ExitUsage
	}
	if len(devices) == 0 {
		fmt.Fprintln(s.env.Stderr, "pre-nixos cleanup: name at least one device, e.g. /dev/vdb")
		return ExitUsage
	}
	if s.exec {
		// Manual cleanup meets the same gate: only disks this run's data
		// check examined (never the boot medium or a removable disk).
		if _, err := s.armGate(ctx); err != nil {
			return s.fail("%v; refusing to clean up", err)
		}
	}
	cmds, err := cleanup.Run(ctx, cleanup.Config{Action: action, Devices: devices, Execute: s.exec, Runner: s.runner, Log: s.log, Sleep: s.env.Sleep, Gate: s.gate})
	if !s.exec {
		for _, c := range cmds {
			fmt.Fprintln(s.env.Stdout, c)
		}
	}
	if err != nil {
		return s.fail("%v", err)
	}
	return ExitOK
}

// armGate runs storage detection and arms the gate with the inventory
// disks it examined (inventory ∩ detection; boot medium, removable,
// read-only, ignored and duplicate disks excluded).
func (s *session) armGate(ctx context.Context) (detect.Result, error) {
	d := s.detectDeps()
	det, err := detect.Detect(ctx, d)
	if err != nil {
		return det, err
	}
	disks, excluded, err := inventory.Scan(s.env.SysRoot, det.BootDisks...)
	if err != nil {
		return det, err
	}
	_, excluded, eligible := boot.Eligible(disks, excluded, det)
	boot.Arm(s.gate, s.env.SysRoot, disks, det, eligible)
	s.log.Info("pre_nixos.storage.eligible", "disks", eligible, "excluded", excluded)
	return det, nil
}

func (s *session) detectDeps() detect.Deps {
	// The boot medium is looked for on this machine: its cmdline, mount
	// table and sysfs, never a described tree's.
	d := detect.OSDeps(s.runner, s.env.ProcRoot, s.log)
	d.Stack = detect.OSStack(s.env.SysRoot, s.env.ProcRoot)
	if s.env.Exists != nil {
		d.Exists = s.env.Exists
	}
	if s.env.Realpath != nil {
		d.Realpath = s.env.Realpath
		d.Stack.Realpath = s.env.Realpath
	}
	return d
}

func (s *session) plan(ctx context.Context) int {
	var p *planner.Plan
	if s.opts.planFile != "" {
		f, err := os.Open(s.opts.planFile)
		if err != nil {
			return s.fail("reading plan: %v", err)
		}
		p, err = planner.Load(f)
		f.Close()
		if err != nil {
			return s.fail("%s: %v", s.opts.planFile, err)
		}
	} else {
		var bootDisks []string
		// A described machine (--sysfs) has no boot medium to look for.
		if !s.opts.described() {
			bootDisks, _ = detect.ResolveBootDisks(ctx, s.detectDeps())
		}
		disks, excluded, err := inventory.Scan(s.opts.sysfs, bootDisks...)
		if err != nil {
			return s.fail("%v", err)
		}
		ram, err := inventory.MemGiB(s.opts.proc)
		if err != nil {
			return s.fail("%v", err)
		}
		s.log.Info("pre_nixos.inventory.scanned", "disks", disks, "excluded", excluded, "ram_gib", ram)
		var pex []planner.Excluded
		p, pex, err = planner.Compute(disks, planner.Options{Mode: planner.Mode(s.opts.mode), PreferRAID6OnFour: s.opts.raid6, RAMGiB: ram})
		for _, e := range pex {
			fmt.Fprintf(s.env.Stderr, "pre-nixos: leaving out %s: %s\n", e.Name, e.Reason)
		}
		if err != nil {
			return s.fail("%v", err)
		}
	}
	var text []byte
	var err error
	if s.opts.output == "disko" {
		text, err = disko.Render(p)
	} else {
		text, err = p.JSON()
	}
	if err != nil {
		return s.fail("%v", err)
	}
	if _, err := s.env.Stdout.Write(text); err != nil {
		return s.fail("writing plan: %v", err)
	}
	if s.opts.planOnly {
		return ExitOK
	}
	if !s.exec {
		code, _ := s.apply(ctx, p, false)
		return code
	}
	// A bad action is a usage error, found before any side effect.
	if _, err := cleanup.ParseAction(s.env.Getenv("PRE_NIXOS_FORCE_CLEANUP_ACTION")); err != nil {
		fmt.Fprintf(s.env.Stderr, "pre-nixos: %v\n", err)
		return ExitUsage
	}
	// From here on disks may be written: the status file says so first,
	// and says what happened at the end (the login notice must not keep
	// inviting a second wipe after a manual apply).
	s.writeStatus(status.Status{status.KeyState: status.StateInProgress, status.KeyDetail: status.DetailManualApply})
	code, forced, msg := s.execPlan(ctx, p)
	st := status.Status{status.KeyState: status.StateApplied, status.KeyDetail: status.DetailManualApply}
	if forced {
		st[status.KeyDetail] = status.DetailForceCleanup
	}
	switch code {
	case ExitOK:
	case ExitRefusing:
		st[status.KeyState], st[status.KeyDetail] = status.StatePlanOnly, status.DetailExistingStorage
	default:
		st[status.KeyState] = status.StateFailed
		st[status.KeyError] = msg
	}
	s.writeStatus(st)
	return code
}

// writeStatus records storage-status; a failure is logged, not fatal.
func (s *session) writeStatus(st status.Status) {
	data, err := status.Format(st)
	if err == nil {
		err = s.root.WriteFile(s.opts.stateDir+"/"+status.StorageFile, data, 0o644)
	}
	if err != nil {
		s.log.Warn("pre_nixos.storage.status_write_failed", "error", err.Error())
	}
}

// execPlan detects, checks the plan against the gate, cleans when forced
// and applies. It returns the exit code, whether a forced cleanup ran, and
// the error message on failure.
func (s *session) execPlan(ctx context.Context, p *planner.Plan) (code int, forced bool, msg string) {
	failf := func(format string, a ...any) (int, bool, string) {
		m := fmt.Sprintf(format, a...)
		fmt.Fprintf(s.env.Stderr, "pre-nixos: %s\n", m)
		return ExitFailure, forced, m
	}
	{
		det, err := s.armGate(ctx)
		if err != nil {
			return failf("%v; refusing to apply", err)
		}
		// Whatever the plan's source (computed or --plan FILE), it may name
		// only disks this run's data check examined.
		if err := s.gate.CheckDisks("the plan", planDisks(p)); err != nil {
			return failf("%v; nothing was run", err)
		}
		if s.opts.planFile != "" {
			// A plan file names its disks: existing storage elsewhere is
			// neither a reason to refuse nor, under force, a target.
			det.Devices = onDisks(det.Devices, planDisks(p))
		}
		if len(det.Devices) > 0 {
			var lines []string
			for _, d := range det.Devices {
				lines = append(lines, fmt.Sprintf("  - %s (%s)", d.Device, detect.FormatReasons(d.Reasons)))
			}
			if !boot.ForcedLog(s.env.Getenv, s.env.ProcRoot, s.log) {
				fmt.Fprintf(s.env.Stderr, "pre-nixos: existing storage detected:\n%s\nrefusing to apply; set PRE_NIXOS_FORCE_CLEANUP=1 (and optionally PRE_NIXOS_FORCE_CLEANUP_ACTION) to erase it\n", strings.Join(lines, "\n"))
				return ExitRefusing, false, ""
			}
			action, err := cleanup.ParseAction(s.env.Getenv("PRE_NIXOS_FORCE_CLEANUP_ACTION"))
			if err != nil {
				fmt.Fprintf(s.env.Stderr, "pre-nixos: %v\n", err)
				return ExitUsage, false, err.Error()
			}
			forced = true
			devs := boot.CleanupTargets(det, p, s.gate)
			fmt.Fprintf(s.env.Stderr, "pre-nixos: existing storage detected:\n%s\napplying cleanup action %q to %s\n", strings.Join(lines, "\n"), action, strings.Join(devs, " "))
			if _, err := cleanup.Run(ctx, cleanup.Config{Action: action, Devices: devs, Execute: true, Runner: s.runner, Log: s.log, Sleep: s.env.Sleep, Gate: s.gate}); err != nil {
				return failf("%v", err)
			}
		}
	}
	code, msg = s.apply(ctx, p, true)
	return code, forced, msg
}

// onDisks keeps the detected devices that are among disks.
func onDisks(devs []detect.Device, disks []string) []detect.Device {
	in := map[string]bool{}
	for _, d := range disks {
		in[d] = true
	}
	var out []detect.Device
	for _, d := range devs {
		if in[d.Device] {
			out = append(out, d)
		}
	}
	return out
}

func planDisks(p *planner.Plan) []string {
	var out []string
	for _, dp := range p.Partitions {
		out = append(out, "/dev/"+dp.Disk)
	}
	return out
}

func (s *session) apply(ctx context.Context, p *planner.Plan, exec bool) (int, string) {
	res, err := apply.Apply(ctx, apply.Env{Runner: s.runner, Exec: exec, Root: s.root, Log: s.log, Getenv: s.env.Getenv, StateDir: s.opts.stateDir, Sleep: s.env.Sleep, Gate: s.gate, Exists: s.env.Exists}, p, s.opts.backend)
	if err != nil {
		return s.fail("%v", err), err.Error()
	}
	if !s.exec {
		fmt.Fprintf(s.env.Stderr, "pre-nixos: PRE_NIXOS_EXEC is not 1; the %s backend would run:\n", res.Backend)
		for _, c := range res.Commands {
			fmt.Fprintln(s.env.Stderr, "  "+c)
		}
	}
	return ExitOK, ""
}

// DetectStorage is pre-nixos-detect-storage: exit 0 when an eligible disk
// holds existing storage, 1 when none does, 2 on any error. Arguments are
// ignored; findings go to stderr, nothing to stdout.
func DetectStorage(ctx context.Context, _ []string, env Env) int {
	env.defaults()
	log := logging.Discard()
	if logging.Enabled(env.Getenv) {
		var c io.Closer
		log, c = logging.Open(io.Discard, envOr(env.Getenv, "PRE_NIXOS_LOG_FILE", logging.DefaultFile), slog.LevelInfo)
		defer c.Close()
	}
	// Detection only probes; it runs whatever PRE_NIXOS_EXEC says.
	runner := execpolicy.Policy{Exec: false, Inner: env.Runner, Log: log}
	res, err := detect.Detect(ctx, detect.OSDeps(runner, env.ProcRoot, log))
	if err != nil {
		fmt.Fprintf(env.Stderr, "pre-nixos-detect-storage: %v\n", err)
		return 2
	}
	if len(res.Devices) == 0 {
		return 1
	}
	for _, d := range res.Devices {
		fmt.Fprintf(env.Stderr, "pre-nixos-detect-storage: %s (%s)\n", d.Device, detect.FormatReasons(d.Reasons))
	}
	return 0
}

// Console is pre-nixos-console.
func Console(ctx context.Context, args []string, env Env) int {
	env.defaults()
	const use = "usage: pre-nixos-console broadcast MESSAGE... [--active-path PATH] [--timeout DURATION]"
	if len(args) == 0 || args[0] != "broadcast" {
		fmt.Fprintln(env.Stderr, use)
		return ExitUsage
	}
	active := console.DefaultActivePath
	timeout := console.DefaultTimeout
	var words []string
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		name, val, hasVal := strings.Cut(a, "=")
		switch name {
		case "--active-path", "--timeout":
			if !hasVal {
				if i+1 >= len(rest) {
					fmt.Fprintf(env.Stderr, "pre-nixos-console: %s needs a value\n%s\n", name, use)
					return ExitUsage
				}
				i++
				val = rest[i]
			}
			if name == "--active-path" {
				active = val
			} else {
				d, err := time.ParseDuration(val)
				if err != nil || d <= 0 {
					fmt.Fprintf(env.Stderr, "pre-nixos-console: bad --timeout %q\n", val)
					return ExitUsage
				}
				timeout = d
			}
		default:
			words = append(words, a)
		}
	}
	if len(words) == 0 {
		fmt.Fprintln(env.Stderr, use)
		return ExitUsage
	}
	rs := console.Broadcast(ctx, strings.Join(words, " "), console.Targets(active), timeout)
	if !console.AnyOK(rs) {
		for _, r := range rs {
			fmt.Fprintf(env.Stderr, "pre-nixos-console: %s: %s\n", r.Path, r.Err)
		}
		return ExitFailure
	}
	return ExitOK
}
