// Package boot is the flow pre-nixos.service runs at every boot
// (docs/provisioner.md, "pre-nixos boot"; docs/decisions.md says why blank
// disks are provisioned without asking): detect storage, provision blank disks
// automatically (plan only when storage exists unless forced, or when
// detection failed), record
// storage-status, bring up `lan` with DHCP and announce its address, then
// harden and start sshd.
package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/bootlab/bootlab/provisioner/apply"
	"github.com/bootlab/bootlab/provisioner/cleanup"
	"github.com/bootlab/bootlab/provisioner/console"
	"github.com/bootlab/bootlab/provisioner/detect"
	"github.com/bootlab/bootlab/provisioner/disko"
	"github.com/bootlab/bootlab/provisioner/execpolicy"
	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/network"
	"github.com/bootlab/bootlab/provisioner/planner"
	"github.com/bootlab/bootlab/provisioner/sshd"
	"github.com/bootlab/bootlab/provisioner/status"
)

// DetailExecutionDisabled marks a dry run (PRE_NIXOS_EXEC unset): nothing
// was applied, so the status must not claim it was.
const DetailExecutionDisabled = "execution-disabled"

// ForceCleanupArg on the kernel command line forces cleanup of existing
// storage, like PRE_NIXOS_FORCE_CLEANUP=1.
const ForceCleanupArg = "pre-nixos-force-cleanup=1"

// forceCleanupKey is the kernel argument's name; its value is read with
// ExplicitTrue like the environment variable.
const forceCleanupKey = "pre-nixos-force-cleanup"

// Config is everything the flow touches; zero values mean the real machine.
type Config struct {
	Root      execpolicy.Root
	SysfsRoot string
	ProcRoot  string
	StateDir  string
	Exec      bool
	Runner    execpolicy.Runner
	Log       *slog.Logger
	Stdout    io.Writer
	Getenv    func(string) string
	Backend   string
	Planner   planner.Options
	KeyFile   string
	SSHDUnits []string
	// ActivePath lists the consoles to announce on.
	ActivePath string
	Version    string

	Detect  detect.Deps
	Apply   apply.Env
	Network network.Config
	// ConsoleTimeout bounds each console write.
	ConsoleTimeout time.Duration
	// Gate checks every storage command; nil means a new one over this
	// machine's sysfs. It is armed with this run's eligible disks only.
	Gate *execpolicy.Gate
}

// Outcome is what the boot reported.
type Outcome struct {
	Storage status.Status
	IPv4    string
}

// ExplicitTrue reports whether v is one of 1, true, yes, on (any case).
// Force destroys data, so everything else (including typos such as "nope"
// or "N", which the Python pre-nixos's "not false" rule treated as true) is false.
func ExplicitTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// Forced reports whether existing storage may be destroyed. Two sources
// can say so: PRE_NIXOS_FORCE_CLEANUP and the kernel argument
// pre-nixos-force-cleanup= (of which the last one on the command line
// counts, as the kernel does for its own parameters). Force needs at least
// one of them set, and every one that is set must be explicitly true (1,
// true, yes, on): an explicit "no" (0, false, or any other value) in either
// cancels the other's "yes". Erasing data is never decided by the source
// that happens to be read first.
func Forced(getenv func(string) string, procRoot string) bool {
	return ForcedLog(getenv, procRoot, nil)
}

// ForcedLog is Forced with a logger for the values that do not force.
func ForcedLog(getenv func(string) string, procRoot string, log *slog.Logger) bool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	type source struct{ name, value string }
	var set []source
	if v := getenv("PRE_NIXOS_FORCE_CLEANUP"); strings.TrimSpace(v) != "" {
		set = append(set, source{"PRE_NIXOS_FORCE_CLEANUP", v})
	}
	if b, err := os.ReadFile(filepath.Join(procRoot, "cmdline")); err == nil {
		last, found := "", false
		for _, w := range strings.Fields(string(b)) {
			if k, v, _ := strings.Cut(w, "="); k == forceCleanupKey {
				last, found = v, true
			}
		}
		if found {
			set = append(set, source{"kernel command line (last " + forceCleanupKey + "=)", last})
		}
	}
	forced := len(set) > 0
	for _, s := range set {
		if !ExplicitTrue(s.value) {
			forced = false
			log.Warn("pre_nixos.boot.force_not_set", "source", s.name, "value", s.value, "reason", "not one of 1, true, yes, on: not forcing, whatever the other source says")
		}
	}
	return forced
}

func (c *Config) defaults() {
	if c.SysfsRoot == "" {
		c.SysfsRoot = "/sys"
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.StateDir == "" {
		c.StateDir = status.DefaultDir
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if c.ActivePath == "" {
		c.ActivePath = filepath.Join(c.SysfsRoot, "class/tty/console/active")
	}
	if c.Version == "" {
		c.Version = "unknown"
	}
	if c.Gate == nil {
		c.Gate = execpolicy.NewGate(detect.OSStack(c.SysfsRoot, c.ProcRoot).Disks)
	}
	if c.Exec {
		// Every command of the flow passes the gate, whoever issues it.
		c.Runner = execpolicy.Gated{Gate: c.Gate, Inner: c.Runner, Log: c.Log}
	}
	if c.Detect.Runner == nil {
		c.Detect = detect.OSDeps(c.Runner, c.ProcRoot, c.Log)
		c.Detect.Stack = detect.OSStack(c.SysfsRoot, c.ProcRoot)
	}
	if c.Detect.Log == nil {
		c.Detect.Log = c.Log
	}
	c.Apply.Runner, c.Apply.Exec, c.Apply.Root, c.Apply.Log, c.Apply.StateDir, c.Apply.Gate = c.Runner, c.Exec, c.Root, c.Log, c.StateDir, c.Gate
	if c.Apply.Getenv == nil {
		c.Apply.Getenv = c.Getenv
	}
	c.Network.SysfsRoot, c.Network.Root, c.Network.Runner, c.Network.Exec, c.Network.Log = c.SysfsRoot, c.Root, c.Runner, c.Exec, c.Log
}

// announce prints a line and, when executing, broadcasts it to consoles.
func (c *Config) announce(ctx context.Context, msg string) {
	fmt.Fprintln(c.Stdout, msg)
	if !c.Exec {
		return
	}
	rs := console.Broadcast(ctx, msg, console.Targets(c.ActivePath), c.ConsoleTimeout)
	c.Log.Info("pre_nixos.console.broadcast", "message", msg, "console_results", rs)
}

// Run executes the boot flow. Every phase runs even when an earlier one
// failed (a machine whose storage failed should still be reachable over
// SSH to debug it); the returned error joins all failures.
func Run(ctx context.Context, c Config) (Outcome, error) {
	c.defaults()
	var out Outcome
	var errs []error
	if err := c.Root.MkdirAll(c.StateDir, 0o755); err != nil {
		return out, err
	}
	c.announce(ctx, "pre-nixos boot image version "+c.Version)

	// In progress first: a kill or crash mid-apply must not leave a file
	// from an earlier run (or none) that reads as finished.
	if err := c.writeStorageStatus(status.Status{status.KeyState: status.StateInProgress, status.KeyDetail: status.DetailStarted}); err != nil {
		errs = append(errs, err)
	}
	st, err := c.safeStorage(ctx)
	out.Storage = st
	if err != nil {
		errs = append(errs, err)
		st[status.KeyError] = err.Error()
	}
	if ferr := c.writeStorageStatus(st); ferr != nil {
		errs = append(errs, ferr)
	}
	c.Log.Info("pre_nixos.boot.storage_status", "state", st.State(), "detail", st.Detail())
	c.announce(ctx, fmt.Sprintf("pre-nixos: storage %s (%s)", st.State(), st.Detail()))

	ip, err := runNetwork(ctx, &c)
	out.IPv4 = ip
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	return out, nil
}

func (c *Config) writeStorageStatus(st status.Status) error {
	data, err := status.Format(st)
	if err == nil {
		err = c.Root.WriteFile(path.Join(c.StateDir, status.StorageFile), data, 0o644)
	}
	if err != nil {
		return fmt.Errorf("writing storage status: %w", err)
	}
	return nil
}

// safeStorage runs the storage phase and turns a panic into STATE=failed
// with the reason, so the network and sshd phases still run and the status
// file tells the truth.
func (c *Config) safeStorage(ctx context.Context) (st status.Status, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.Log.Error("pre_nixos.boot.panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			detail := status.DetailPanic
			if st != nil && st.Detail() != "" {
				detail = st.Detail()
			}
			st = status.Status{status.KeyState: status.StateFailed, status.KeyDetail: detail}
			err = fmt.Errorf("storage phase crashed: %v", r)
		}
	}()
	st = status.Status{}
	return c.storage(ctx, st)
}

func (c *Config) storage(ctx context.Context, st status.Status) (status.Status, error) {
	det, derr := detect.Detect(ctx, c.Detect)
	disks, excluded, err := inventory.Scan(c.SysfsRoot, det.BootDisks...)
	if err != nil {
		// Nothing was planned or applied: say so, not "auto-applied".
		st[status.KeyState], st[status.KeyDetail] = status.StateFailed, status.DetailInventoryError
		return st, err
	}
	if derr == nil {
		var eligible []string
		disks, excluded, eligible = Eligible(disks, excluded, det)
		Arm(c.Gate, c.SysfsRoot, disks, det, eligible)
		c.Log.Info("pre_nixos.storage.eligible", "disks", eligible)
	}
	c.Log.Info("pre_nixos.inventory.scanned", "disks", disks, "excluded", excluded)
	opts := c.Planner
	if ram, err := inventory.MemGiB(c.ProcRoot); err == nil {
		opts.RAMGiB = ram
	} else {
		c.Log.Warn("pre_nixos.inventory.ram_unknown", "error", err.Error())
	}
	plan, pex, err := planner.Compute(disks, opts)
	if len(pex) > 0 {
		c.Log.Info("pre_nixos.planner.excluded", "disks", pex)
	}
	detail := status.DetailAutoApplied
	forced := ForcedLog(c.Getenv, c.ProcRoot, c.Log)
	switch {
	case derr != nil:
		detail = status.DetailDetectionError
		c.Log.Error("pre_nixos.boot.detection_failed", "error", derr.Error())
	case len(det.Devices) > 0 && forced:
		detail = status.DetailForceCleanup
	case len(det.Devices) > 0:
		detail = status.DetailExistingStorage
	}
	st[status.KeyDetail] = detail
	if err != nil {
		st[status.KeyState] = status.StateFailed
		return st, fmt.Errorf("planning storage: %w", err)
	}
	js, _ := plan.JSON()
	c.Log.Info("pre_nixos.planner.plan", "plan", string(js))

	planOnly := detail == status.DetailDetectionError || detail == status.DetailExistingStorage
	if planOnly || !c.Exec {
		st[status.KeyState] = status.StatePlanOnly
		if !c.Exec && !planOnly {
			st[status.KeyDetail] = DetailExecutionDisabled
		}
		// The disko config is written either way so an operator can review it.
		text, err := disko.Render(plan)
		if err == nil {
			cfgPath := c.Apply.ConfigPath
			if cfgPath == "" {
				cfgPath = disko.DefaultConfigPath
			}
			err = c.Root.WriteFile(cfgPath, text, 0o644)
		}
		if err != nil {
			st[status.KeyState] = status.StateFailed
			return st, err
		}
		return st, nil
	}
	if detail == status.DetailForceCleanup {
		action, err := cleanup.ParseAction(c.Getenv("PRE_NIXOS_FORCE_CLEANUP_ACTION"))
		if err != nil {
			st[status.KeyState] = status.StateFailed
			return st, err
		}
		devs := CleanupTargets(det, plan, c.Gate)
		c.Log.Info("pre_nixos.boot.force_cleanup", "action", string(action), "devices", devs)
		if err := c.Gate.CheckDisks("the storage plan", planDisks(plan)); err != nil {
			st[status.KeyState] = status.StateFailed
			return st, fmt.Errorf("forced cleanup: %w", err)
		}
		if _, err := cleanup.Run(ctx, cleanup.Config{Action: action, Devices: devs, Execute: c.Exec, Runner: c.Runner, Log: c.Log, Sleep: c.Apply.Sleep, Gate: c.Gate}); err != nil {
			st[status.KeyState] = status.StateFailed
			return st, fmt.Errorf("forced cleanup: %w", err)
		}
	}
	res, err := apply.Apply(ctx, c.Apply, plan, c.Backend)
	if res.Backend != "" {
		st[status.KeyBackend] = res.Backend
	}
	if err != nil {
		st[status.KeyState] = status.StateFailed
		return st, fmt.Errorf("applying storage plan: %w", err)
	}
	st[status.KeyState] = status.StateApplied
	return st, nil
}

// Eligible intersects the inventory (sysfs) with the disks storage
// detection examined this run (lsblk, probed, not vanished): a disk only
// sysfs knows about was never checked for data and is left out with a
// reason. It returns the disks to plan, the updated exclusions and the
// eligible disk paths for the gate.
func Eligible(disks []inventory.Disk, excluded []inventory.Excluded, det detect.Result) ([]inventory.Disk, []inventory.Excluded, []string) {
	examined := map[string]bool{}
	for _, c := range det.Candidates {
		examined[c] = true
	}
	var keep []inventory.Disk
	var eligible []string
	for _, d := range disks {
		if !examined["/dev/"+d.Name] {
			excluded = append(excluded, inventory.Excluded{Name: d.Name, Reason: "not examined by storage detection (missing from lsblk, vanished, removable or the boot medium there)"})
			continue
		}
		keep = append(keep, d)
		eligible = append(eligible, "/dev/"+d.Name)
	}
	return keep, excluded, eligible
}

// Arm arms gate with the eligible disks and binds each to what this run's
// data check saw on it (identity from sysfsRoot, data from detection), so
// a cleanup refuses a disk that changed since it was examined.
func Arm(gate *execpolicy.Gate, sysfsRoot string, disks []inventory.Disk, det detect.Result, eligible []string) {
	gate.Allow(eligible)
	hasData := map[string]bool{}
	for _, d := range det.Devices {
		hasData[d.Device] = true
	}
	identify := func(dev string) string { return inventory.Identity(sysfsRoot, dev) }
	for _, dev := range eligible {
		gate.Bind(dev, execpolicy.Examined{Identity: identify(dev), HasData: hasData[dev]}, identify)
	}
}

// CleanupTargets are the detected disks with data plus the planned disks,
// limited to the eligible ones (a detected disk the inventory left out, e.g.
// read-only, is never cleaned).
func CleanupTargets(det detect.Result, plan *planner.Plan, gate *execpolicy.Gate) []string {
	ok := map[string]bool{}
	for _, d := range gate.Allowed() {
		ok[d] = true
	}
	targets := map[string]bool{}
	for _, d := range det.Devices {
		if ok[d.Device] {
			targets[d.Device] = true
		}
	}
	for _, d := range planDisks(plan) {
		targets[d] = true
	}
	var devs []string
	for d := range targets {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	return devs
}

func planDisks(p *planner.Plan) []string {
	var out []string
	for _, dp := range p.Partitions {
		out = append(out, "/dev/"+dp.Disk)
	}
	return out
}

// RunNetwork is the second half of the boot flow on its own (`pre-nixos
// network`): LAN + DHCP + announcement, then sshd hardening.
func RunNetwork(ctx context.Context, c Config) (string, error) {
	c.defaults()
	if err := c.Root.MkdirAll(c.StateDir, 0o755); err != nil {
		return "", err
	}
	return runNetwork(ctx, &c)
}

func runNetwork(ctx context.Context, c *Config) (string, error) {
	var errs []error
	ip, err := c.network(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	err = sshd.Apply(ctx, sshd.Config{Root: c.Root, KeyFile: c.KeyFile, Units: c.SSHDUnits, Runner: c.Runner, Log: c.Log})
	switch {
	case errors.Is(err, sshd.ErrNoKey):
		// Without a key nobody can log in over SSH; sshd stays stopped but
		// password logins are already disabled in its config.
		c.Log.Warn("pre_nixos.boot.sshd_not_started", "reason", err.Error())
	case err != nil:
		errs = append(errs, fmt.Errorf("sshd: %w", err))
	}
	return ip, errors.Join(errs...)
}

func (c *Config) network(ctx context.Context) (string, error) {
	if _, err := network.Configure(ctx, c.Network); err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	ip, err := network.WaitIPv4(ctx, c.Network, network.LANName)
	if err != nil {
		c.Log.Warn("pre_nixos.network.configure_lan.ip_unavailable", "error", err.Error())
		return "", fmt.Errorf("network: %w", err)
	}
	if ip == "" {
		return "", nil // dry run
	}
	data, _ := status.Format(status.Status{status.KeyLANIPv4: ip})
	if err := c.Root.WriteFile(path.Join(c.StateDir, status.NetworkFile), data, 0o644); err != nil {
		c.Log.Warn("pre_nixos.network.configure_lan.status_write_failed", "error", err.Error())
	} else {
		c.Log.Info("pre_nixos.network.configure_lan.status_written", "path", c.Root.Path(path.Join(c.StateDir, status.NetworkFile)))
	}
	c.announce(ctx, "LAN IPv4 address: "+ip)
	return ip, nil
}
