// Package apply executes a storage plan with one of two backends behind one
// interface: disko (the NixOS image) or native tools (sgdisk, mdadm, LVM,
// mkfs, mount) for images without Nix. Both write the disko config file and
// run the same pre-apply cleanup and the allowlisted post-apply commands.
package apply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/bootlab/bootlab/provisioner/cleanup"
	"github.com/bootlab/bootlab/provisioner/disko"
	"github.com/bootlab/bootlab/provisioner/execpolicy"
	"github.com/bootlab/bootlab/provisioner/planner"
)

// Backend names.
const (
	Auto   = "auto"
	Disko  = "disko"
	Native = "native"
)

// MountRoot is where the target system is assembled.
const MountRoot = "/mnt"

// PlanFile is the recorded plan inside the state directory.
const PlanFile = "storage-plan.json"

// Env is everything apply touches.
type Env struct {
	Runner execpolicy.Runner
	// Exec mirrors PRE_NIXOS_EXEC: without it the runner skips commands and
	// apply neither waits for device nodes nor records the plan.
	Exec     bool
	Root     execpolicy.Root
	Log      *slog.Logger
	LookPath func(string) (string, error)
	// Exists checks device nodes (real /dev, not under Root).
	Exists func(string) bool
	Sleep  func(time.Duration)
	Getenv func(string) string
	// StateDir is the target-system path of PRE_NIXOS_STATE_DIR.
	StateDir string
	// ConfigPath overrides disko.DefaultConfigPath.
	ConfigPath string
	// NodeWait bounds the wait for device nodes (default 30 s).
	NodeWait time.Duration
	// Gate, when set, learns the plan's devices and checks the plan's disks
	// and the whole command list before the first command runs.
	Gate *execpolicy.Gate
}

// Owners maps every device and VG a plan creates to the disks it lies on,
// as the gate names them (/dev/sdb1, /dev/md0, vg:main, /dev/main/slash,
// /dev/mapper/main-slash, disko).
func Owners(p *planner.Plan) map[string][]string {
	out := map[string][]string{}
	diskOf := map[string][]string{}
	var all []string
	for _, dp := range p.Partitions {
		d := "/dev/" + dp.Disk
		all = append(all, d)
		for _, part := range dp.Partitions {
			diskOf[part.Name] = []string{d}
		}
	}
	for _, a := range p.Arrays {
		var ds []string
		for _, m := range a.Devices {
			ds = append(ds, diskOf[m]...)
		}
		diskOf[a.Name] = ds
	}
	for name, ds := range diskOf {
		out["/dev/"+name] = ds
	}
	for _, vg := range p.VGs {
		var ds []string
		for _, d := range vg.Devices {
			ds = append(ds, diskOf[d]...)
		}
		out["vg:"+vg.Name] = ds
	}
	for _, lv := range p.LVs {
		ds := out["vg:"+lv.VG]
		out["/dev/"+lv.VG+"/"+lv.Name] = ds
		out["/dev/mapper/"+strings.ReplaceAll(lv.VG, "-", "--")+"-"+strings.ReplaceAll(lv.Name, "-", "--")] = ds
	}
	out["disko"] = all
	return out
}

// preflight checks the plan's disks and every command the backend would
// run, collected in a dry pass, before anything runs.
func preflight(ctx context.Context, env *Env, p *planner.Plan, name string, roots []string) error {
	g := env.Gate
	if g == nil || !env.Exec {
		return nil
	}
	for k, ds := range Owners(p) {
		g.Learn(k, ds)
	}
	if err := g.CheckDisks("the storage plan", roots); err != nil {
		return err
	}
	var cmds []execpolicy.Cmd
	col := execpolicy.Collector{Cmds: &cmds}
	dry := *env
	dry.Exec = false
	dry.Runner = col
	switch name {
	case Disko:
		cmds = append(cmds, execpolicy.C("disko"))
	case Native:
		if err := runNative(ctx, &dry, col, p); err != nil {
			return err
		}
	}
	for _, c := range p.PostApplyCommands {
		argv, err := p.PostApplyArgv(c)
		if err != nil {
			return err
		}
		cmds = append(cmds, execpolicy.C(argv[0], argv[1:]...))
	}
	return g.CheckAll(cmds)
}

func (e *Env) defaults() {
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
	if e.LookPath == nil {
		e.LookPath = exec.LookPath
	}
	if e.Exists == nil {
		e.Exists = func(p string) bool { _, err := os.Stat(p); return err == nil }
	}
	if e.Sleep == nil {
		e.Sleep = time.Sleep
	}
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.ConfigPath == "" {
		e.ConfigPath = disko.DefaultConfigPath
	}
	if e.NodeWait == 0 {
		e.NodeWait = 30 * time.Second
	}
}

// Choose resolves --apply-backend.
func Choose(name string, lookPath func(string) (string, error)) (string, error) {
	switch name {
	case Disko, Native:
		return name, nil
	case Auto, "":
		if lookPath == nil {
			lookPath = exec.LookPath
		}
		if _, err := lookPath("disko"); err == nil {
			return Disko, nil
		}
		return Native, nil
	}
	return "", fmt.Errorf("unknown apply backend %q (want auto, disko or native)", name)
}

// Result describes an apply.
type Result struct {
	Backend    string
	ConfigPath string
	Commands   []string
}

type recorder struct {
	env  *Env
	cmds *[]string
}

func (r recorder) Run(ctx context.Context, c execpolicy.Cmd) (execpolicy.Result, error) {
	if !c.Probe {
		*r.cmds = append(*r.cmds, c.String())
	}
	return r.env.Runner.Run(ctx, c)
}

// Apply runs backend ("auto", "disko" or "native") on p.
func Apply(ctx context.Context, env Env, p *planner.Plan, backend string) (Result, error) {
	env.defaults()
	log := env.Log
	name, err := Choose(backend, env.LookPath)
	if err != nil {
		return Result{}, err
	}
	res := Result{Backend: name, ConfigPath: env.ConfigPath}
	log.Info("pre_nixos.apply.start", "backend", name, "execute", env.Exec)
	text, err := disko.Render(p)
	if err != nil {
		return res, err
	}
	if err := env.Root.WriteFile(env.ConfigPath, text, 0o644); err != nil {
		return res, fmt.Errorf("writing disko config: %w", err)
	}
	log.Info("pre_nixos.apply.config_written", "config_path", env.Root.Path(env.ConfigPath))
	if len(p.Partitions) == 0 {
		log.Info("pre_nixos.apply.no_devices")
		return res, nil
	}
	var roots []string
	for _, dp := range p.Partitions {
		roots = append(roots, "/dev/"+dp.Disk)
	}
	sort.Strings(roots)
	log.Info("pre_nixos.apply.root_device_collection", "devices", roots)
	if err := preflight(ctx, &env, p, name, roots); err != nil {
		log.Error("pre_nixos.apply.refused", "error", err.Error())
		return res, fmt.Errorf("refusing to apply: %w", err)
	}
	rec := recorder{env: &env, cmds: &res.Commands}
	clean := func() error {
		cmds, err := cleanup.Run(ctx, cleanup.Config{Action: cleanup.WipeSignatures, Devices: roots, Execute: env.Exec, Runner: env.Runner, Log: log, Sleep: env.Sleep, Gate: env.Gate})
		res.Commands = append(res.Commands, cmds...)
		return err
	}
	if env.Exec {
		if err := clean(); err != nil {
			return res, fmt.Errorf("cleaning disks before apply: %w", err)
		}
		// From here on data on these disks is this run's own (a retry
		// after a failed disko cleans a half-applied layout).
		if env.Gate != nil {
			env.Gate.MarkWritten(roots...)
		}
	} else {
		log.Info("pre_nixos.apply.cleanup_skipped", "reason", "execution disabled", "planned_root_devices", roots)
	}

	switch name {
	case Disko:
		err = runDisko(ctx, &env, rec, env.Root.Path(env.ConfigPath), roots, clean)
	case Native:
		err = runNative(ctx, &env, rec, p)
	}
	if err != nil {
		return res, err
	}
	for _, c := range p.PostApplyCommands {
		// Never through a shell: only the planner's own allowlisted commands,
		// as argv (planner.Load rejects anything else already).
		argv, err := p.PostApplyArgv(c)
		if err != nil {
			return res, fmt.Errorf("post-apply command: %w", err)
		}
		cmd := execpolicy.C(argv[0], argv[1:]...)
		r, err := rec.Run(ctx, cmd)
		if err := execpolicy.Check(r, err, cmd); err != nil {
			return res, fmt.Errorf("post-apply command: %w", err)
		}
	}
	if env.Exec {
		devs, err := disko.Devices(p, true)
		if err == nil {
			rp := *p
			rp.Disko = devs
			var js []byte
			js, err = rp.JSON()
			if err == nil {
				err = env.Root.WriteFile(path.Join(env.StateDir, PlanFile), js, 0o644)
			}
		}
		if err != nil {
			log.Warn("pre_nixos.apply.storage_plan_record_failed", "error", err.Error())
		} else {
			log.Info("pre_nixos.apply.storage_plan_recorded", "path", env.Root.Path(path.Join(env.StateDir, PlanFile)))
		}
	}
	log.Info("pre_nixos.apply.finished", "backend", name, "commands", res.Commands)
	return res, nil
}

// DiskoMode is how this disko generation wants to be called.
type DiskoMode struct {
	Mode           string
	YesWipeAllDisk bool
}

// DetectDiskoMode reads `disko --help`: newer disko wants
// `--mode destroy,format,mount` (and maybe --yes-wipe-all-disks), older
// `--mode disko`; the wrong one prints usage and exits 1.
func DetectDiskoMode(ctx context.Context, r execpolicy.Runner, log *slog.Logger) DiskoMode {
	res, err := r.Run(ctx, execpolicy.P("disko", "--help"))
	if err != nil {
		log.Info("pre_nixos.apply.disko_mode", "mode", "disko", "reason", err.Error())
		return DiskoMode{Mode: "disko"}
	}
	help := string(res.Stdout) + string(res.Stderr)
	if strings.Contains(help, "destroy,format,mount") {
		m := DiskoMode{Mode: "destroy,format,mount", YesWipeAllDisk: strings.Contains(help, "--yes-wipe-all-disks")}
		log.Info("pre_nixos.apply.disko_mode", "mode", m.Mode, "supports_yes_wipe", m.YesWipeAllDisk)
		return m
	}
	log.Info("pre_nixos.apply.disko_mode", "mode", "disko", "supports_yes_wipe", false)
	return DiskoMode{Mode: "disko"}
}

func runDisko(ctx context.Context, env *Env, r execpolicy.Runner, cfg string, roots []string, clean func() error) error {
	mode := DetectDiskoMode(ctx, env.Runner, env.Log)
	args := []string{"--mode", mode.Mode}
	if mode.YesWipeAllDisk {
		args = append(args, "--yes-wipe-all-disks")
	}
	args = append(args, "--root-mountpoint", MountRoot, cfg)
	cmd := execpolicy.C("disko", args...)
	nixPath := strings.TrimSpace(env.Getenv("NIX_PATH"))
	if nixPath == "" {
		if pkgs := strings.TrimSpace(env.Getenv("PRE_NIXOS_NIXPKGS")); pkgs != "" {
			cmd.Env = []string{"NIX_PATH=nixpkgs=" + pkgs}
			env.Log.Info("pre_nixos.apply.nix_path_injected", "nix_path", "nixpkgs="+pkgs)
		} else {
			env.Log.Warn("pre_nixos.apply.nix_path_missing")
		}
	}
	res, err := r.Run(ctx, cmd)
	err = execpolicy.Check(res, err, cmd)
	if err == nil || !env.Exec {
		return err
	}
	// A half-applied layout from an earlier attempt is the usual cause:
	// clean, re-read partition tables once, and try exactly once more.
	env.Log.Warn("pre_nixos.apply.disko_failed", "error", err.Error())
	if cerr := clean(); cerr != nil {
		return fmt.Errorf("disko failed (%v) and the cleanup before retrying failed: %w", err, cerr)
	}
	for _, dev := range roots {
		_ = cleanup.Refresh(ctx, r, dev, 1, env.Sleep)
	}
	env.Log.Info("pre_nixos.apply.retry_after_cleanup", "command", cmd.String(), "cleaned_devices", roots)
	res, err = env.Runner.Run(ctx, cmd)
	if err := execpolicy.Check(res, err, cmd); err != nil {
		return fmt.Errorf("disko failed twice: %w", err)
	}
	return nil
}

// GPT type codes per planned partition type.
var typeCodes = map[string]string{planner.PartEFI: "EF00", planner.PartLVM: "8E00", planner.PartLinuxRAID: "FD00"}

func runNative(ctx context.Context, env *Env, r execpolicy.Runner, p *planner.Plan) error {
	run := func(c execpolicy.Cmd, allowed ...int) error {
		res, err := r.Run(ctx, c)
		return execpolicy.Check(res, err, c, allowed...)
	}
	var parts []string
	for _, dp := range p.Partitions {
		args := []string{"--clear"}
		for i, part := range dp.Partitions {
			n := i + 1
			size := "0"
			if part.Type == planner.PartEFI {
				size = "+" + fmt.Sprint(planner.ESPSize/planner.MiB) + "M"
			}
			args = append(args,
				fmt.Sprintf("--new=%d:0:%s", n, size),
				fmt.Sprintf("--typecode=%d:%s", n, typeCodes[part.Type]),
				// The partition label disko would give it, so both backends
				// leave the same /dev/disk/by-partlabel names.
				fmt.Sprintf("--change-name=%d:disk-%s-%s", n, dp.Disk, part.Name))
			parts = append(parts, "/dev/"+part.Name)
		}
		args = append(args, "/dev/"+dp.Disk)
		if err := run(execpolicy.C("sgdisk", args...)); err != nil {
			return fmt.Errorf("partitioning /dev/%s: %w", dp.Disk, err)
		}
		if err := run(execpolicy.C("partprobe", "/dev/"+dp.Disk), 1); err != nil {
			return fmt.Errorf("re-reading partitions of /dev/%s: %w", dp.Disk, err)
		}
	}
	if err := waitNodes(ctx, env, r, parts); err != nil {
		return err
	}
	var arrays []string
	for _, a := range p.Arrays {
		args := []string{"--create", "/dev/" + a.Name, "--run", "--metadata=1.2",
			fmt.Sprintf("--level=%d", planner.Levels[a.Level]), fmt.Sprintf("--raid-devices=%d", len(a.Devices))}
		for _, d := range a.Devices {
			args = append(args, "/dev/"+d)
		}
		if err := run(execpolicy.C("mdadm", args...)); err != nil {
			return fmt.Errorf("creating array %s: %w", a.Name, err)
		}
		arrays = append(arrays, "/dev/"+a.Name)
	}
	if err := waitNodes(ctx, env, r, arrays); err != nil {
		return err
	}
	for _, vg := range p.VGs {
		var devs []string
		for _, d := range vg.Devices {
			devs = append(devs, "/dev/"+d)
		}
		if err := run(execpolicy.C("pvcreate", append([]string{"-ff", "-y"}, devs...)...)); err != nil {
			return fmt.Errorf("creating physical volumes for %s: %w", vg.Name, err)
		}
		if err := run(execpolicy.C("vgcreate", append([]string{vg.Name}, devs...)...)); err != nil {
			return fmt.Errorf("creating volume group %s: %w", vg.Name, err)
		}
	}
	for _, lv := range p.LVs {
		size, _ := planner.ParseSize(lv.Size)
		if err := run(execpolicy.C("lvcreate", "-y", "-n", lv.Name, "-L", fmt.Sprintf("%dm", size/planner.MiB), lv.VG)); err != nil {
			return fmt.Errorf("creating logical volume %s/%s: %w", lv.VG, lv.Name, err)
		}
	}
	espOrder, espLabel := p.ESPLabels()
	for _, esp := range espOrder {
		if err := run(execpolicy.C("mkfs.vfat", "-F", "32", "-n", espLabel[esp], "/dev/"+esp)); err != nil {
			return fmt.Errorf("formatting ESP %s: %w", esp, err)
		}
	}
	type mount struct{ dev, at, opts string }
	var mounts []mount
	var swaps []string
	for _, lv := range p.LVs {
		dev := "/dev/" + lv.VG + "/" + lv.Name
		if planner.IsSwap(lv.Name) {
			if err := run(execpolicy.C("mkswap", "--label", planner.LVLabel(lv.Name), dev)); err != nil {
				return fmt.Errorf("formatting swap %s: %w", dev, err)
			}
			swaps = append(swaps, dev)
			continue
		}
		if err := run(execpolicy.C("mkfs.ext4", "-F", "-L", planner.LVLabel(lv.Name), dev)); err != nil {
			return fmt.Errorf("formatting %s: %w", dev, err)
		}
		mounts = append(mounts, mount{dev, planner.Mountpoint(lv.Name), "relatime"})
	}
	if len(espOrder) > 0 {
		mounts = append(mounts, mount{"/dev/" + espOrder[0], "/boot", "umask=0077"})
	}
	// Parents before children: "/" first, then shallower paths, then by name.
	depth := func(at string) int {
		if at == "/" {
			return 0
		}
		return strings.Count(at, "/")
	}
	sort.SliceStable(mounts, func(i, j int) bool {
		if di, dj := depth(mounts[i].at), depth(mounts[j].at); di != dj {
			return di < dj
		}
		return mounts[i].at < mounts[j].at
	})
	for _, m := range mounts {
		target := path.Join(MountRoot, m.at)
		if m.at != "/" {
			if err := run(execpolicy.C("mkdir", "-p", target)); err != nil {
				return fmt.Errorf("creating mountpoint %s: %w", target, err)
			}
		}
		if err := run(execpolicy.C("mount", "-o", m.opts, m.dev, target)); err != nil {
			return fmt.Errorf("mounting %s at %s: %w", m.dev, target, err)
		}
	}
	for _, s := range swaps {
		if err := run(execpolicy.C("swapon", s)); err != nil {
			return fmt.Errorf("enabling swap %s: %w", s, err)
		}
	}
	return nil
}

// waitNodes waits for udev to create device nodes: after sgdisk or mdadm
// the kernel knows the device before /dev does, and mdadm/mkfs on a
// missing node fails.
func waitNodes(ctx context.Context, env *Env, r execpolicy.Runner, nodes []string) error {
	if !env.Exec || len(nodes) == 0 {
		return nil
	}
	const step = 200 * time.Millisecond
	attempts := int(env.NodeWait / step)
	for i := 0; ; i++ {
		settle := execpolicy.C("udevadm", "settle")
		if res, err := r.Run(ctx, settle); err != nil || res.ExitCode != 0 {
			env.Log.Info("pre_nixos.apply.udev_settle_failed", "returncode", res.ExitCode)
		}
		var missing []string
		for _, n := range nodes {
			if !env.Exists(n) {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if i >= attempts {
			return fmt.Errorf("device nodes did not appear within %s: %s", env.NodeWait, strings.Join(missing, ", "))
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(fmt.Errorf("waiting for %s", strings.Join(missing, ", ")), err)
		}
		env.Sleep(step)
	}
}
