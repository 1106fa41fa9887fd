package execpolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
)

// ErrRefused is wrapped by every refusal of the Gate.
var ErrRefused = errors.New("refused by the disk gate")

// MountRoot is the only tree storage commands may mount on or create
// directories in (the target system is assembled there).
const MountRoot = "/mnt"

// Gate is the one check every storage-mutating command passes before it
// runs: the command may name only devices that lie on disks which passed
// this run's data check (inventory ∩ storage detection, boot medium and
// removable disks excluded). Whatever path a plan came from (the boot flow,
// `plan --plan FILE`, a manual cleanup), the commands meet the same gate; a
// described machine (`--sysfs DIR`) is never executed at all.
//
// A device name is mapped back to physical disks by what the gate has
// learned (the plan's partitions, arrays, VGs and LVs; the cleanup graph's
// stacks and mountpoints) and by Resolve (sysfs, for devices that exist).
// A name that maps to no disk is refused: unknown means no.
type Gate struct {
	mu      sync.Mutex
	armed   bool
	allowed map[string]bool
	owners  map[string]map[string]bool
	// examined binds each eligible disk to what the data check saw on it,
	// so a cleanup can refuse a disk that changed since (hot swap, data
	// written meanwhile).
	examined map[string]Examined
	identify func(disk string) string
	// Resolve maps an existing device path to the whole disks under it;
	// ok is false when it knows nothing about the path.
	Resolve func(dev string) (disks []string, ok bool)
}

// NewGate returns a gate that refuses every storage command until Allow.
func NewGate(resolve func(string) ([]string, bool)) *Gate {
	return &Gate{allowed: map[string]bool{}, owners: map[string]map[string]bool{}, examined: map[string]Examined{}, Resolve: resolve}
}

// Examined is what this run's data check saw on an eligible disk.
type Examined struct {
	// Identity is the disk's serial, WWN and size as sysfs reported them.
	Identity string
	// HasData is true when partitions or signatures were found (or this
	// run has written the disk since).
	HasData bool
}

// Bind records what the data check saw on disk; identify re-reads a
// disk's identity the same way (nil: identity is not re-checked).
func (g *Gate) Bind(disk string, e Examined, identify func(string) string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.examined[disk] = e
	if identify != nil {
		g.identify = identify
	}
}

// ExaminedAs returns what the data check saw on disk.
func (g *Gate) ExaminedAs(disk string) (Examined, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.examined[disk]
	return e, ok
}

// Identify re-reads disk's identity now; ok is false when no identity
// source was bound.
func (g *Gate) Identify(disk string) (string, bool) {
	g.mu.Lock()
	f := g.identify
	g.mu.Unlock()
	if f == nil {
		return "", false
	}
	return f(disk), true
}

// MarkWritten records that this run has written disks (an apply started
// on them), so data found there later is this run's own.
func (g *Gate) MarkWritten(disks ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range disks {
		if e, ok := g.examined[d]; ok {
			e.HasData = true
			g.examined[d] = e
		}
	}
}

// Allow arms the gate with the disks (paths like /dev/sdb) that passed this
// run's data check. It replaces any earlier set.
func (g *Gate) Allow(disks []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = true
	g.allowed = map[string]bool{}
	g.examined = map[string]Examined{}
	for _, d := range disks {
		g.allowed[d] = true
	}
}

// Allowed returns the eligible disks, sorted.
func (g *Gate) Allowed() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return sortedSet(g.allowed)
}

// Learn records that name lies on disks. Names are device paths
// (/dev/md0, /dev/main/slash), "vg:NAME" for a volume group, "mount:PATH"
// for a mountpoint and "disko" for the disks of the disko config.
func (g *Gate) Learn(name string, disks []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.owners[name]
	if s == nil {
		s = map[string]bool{}
		g.owners[name] = s
	}
	for _, d := range disks {
		s[d] = true
	}
}

// storage lists the commands the gate checks; everything else (ip,
// systemctl, udevadm settle, ...) does not touch disks. A shell is always
// refused: its argument could do anything.
var storage = map[string]string{
	"wipefs": "dev", "sgdisk": "dev", "sfdisk": "dev", "parted": "dev", "partprobe": "dev",
	"blockdev": "dev", "mdadm": "dev", "pvcreate": "dev", "pvremove": "dev",
	"vgcreate": "vgfirst", "vgremove": "vg", "vgchange": "vg", "vgextend": "vgfirst",
	"lvcreate": "vglast", "lvremove": "dev", "lvchange": "dev", "mkswap": "dev", "dd": "dd",
	"blkdiscard": "dev", "shred": "dev", "swapon": "dev", "swapoff": "dev", "dmsetup": "dev",
	"losetup": "dev", "cryptsetup": "dev", "disko": "disko", "mount": "mount", "umount": "umount",
	"mkdir": "path", "chmod": "path", "sh": "shell", "bash": "shell",
}

func kind(name string) string {
	if strings.HasPrefix(name, "mkfs") {
		return "dev"
	}
	return storage[path.Base(name)]
}

func operands(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			out = append(out, a)
		}
	}
	return out
}

func under(p, root string) bool {
	p = path.Clean(p)
	return p == root || strings.HasPrefix(p, root+"/")
}

// names returns what c names that must lie on allowed disks, or an error
// for a command the gate cannot vouch for.
func names(c Cmd) ([]string, error) {
	k := kind(c.Name)
	var out []string
	devs := func(args []string) {
		for _, a := range args {
			if i := strings.Index(a, "/dev/"); i >= 0 && (i == 0 || strings.HasSuffix(a[:i], "=")) {
				out = append(out, path.Clean(a[i:]))
			}
		}
	}
	ops := operands(c.Args)
	switch k {
	case "shell":
		return nil, fmt.Errorf("%w: %s: commands never run through a shell", ErrRefused, c)
	case "path":
		if len(ops) == 0 || !under(ops[len(ops)-1], MountRoot) || !strings.HasPrefix(ops[len(ops)-1], "/") {
			return nil, fmt.Errorf("%w: %s: only paths under %s", ErrRefused, c, MountRoot)
		}
		return nil, nil
	case "disko":
		return []string{"disko"}, nil
	case "dd":
		// Only the output is written; if=/dev/zero is a source.
		for _, a := range c.Args {
			if o, ok := strings.CutPrefix(a, "of="); ok {
				out = append(out, path.Clean(o))
			}
		}
	case "mount":
		if len(ops) < 2 || !strings.HasPrefix(ops[len(ops)-1], "/") || !under(ops[len(ops)-1], MountRoot) {
			return nil, fmt.Errorf("%w: %s: mounts only under %s", ErrRefused, c, MountRoot)
		}
		devs(c.Args[:len(c.Args)-1])
	case "umount":
		for _, o := range ops {
			if strings.HasPrefix(o, "/dev/") {
				out = append(out, path.Clean(o))
			} else {
				out = append(out, "mount:"+path.Clean(o))
			}
		}
	case "vg":
		for _, o := range ops {
			if strings.HasPrefix(o, "/dev/") {
				out = append(out, path.Clean(o))
			} else {
				out = append(out, "vg:"+o)
			}
		}
	case "vgfirst":
		if len(ops) > 0 {
			out = append(out, "vg:"+ops[0])
		}
		devs(ops)
	case "vglast":
		if len(ops) > 0 && !strings.HasPrefix(ops[len(ops)-1], "/dev/") {
			out = append(out, "vg:"+ops[len(ops)-1])
		}
		devs(ops)
	default:
		devs(c.Args)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s names no device the gate can check", ErrRefused, c)
	}
	return out, nil
}

// owner maps a name to its disks; lock held.
func (g *Gate) owner(name string) []string {
	set := map[string]bool{}
	// An eligible whole disk lies on itself.
	if g.allowed[name] {
		set[name] = true
	}
	for d := range g.owners[name] {
		set[d] = true
	}
	if strings.HasPrefix(name, "/dev/") && g.Resolve != nil {
		if ds, ok := g.Resolve(name); ok {
			for _, d := range ds {
				set[d] = true
			}
		}
	}
	// /dev/VG/LV and /dev/mapper/VG-LV lie on their VG's disks.
	if vg := vgOf(name); vg != "" {
		for d := range g.owners["vg:"+vg] {
			set[d] = true
		}
	}
	return sortedSet(set)
}

// vgOf returns the VG of an LV path, "" when name is not one.
func vgOf(name string) string {
	rest, ok := strings.CutPrefix(name, "/dev/")
	if !ok {
		return ""
	}
	dir, base, ok := strings.Cut(rest, "/")
	if !ok || base == "" || strings.Contains(base, "/") {
		return ""
	}
	switch dir {
	case "mapper":
		// dm doubles hyphens inside names; the single one separates VG and LV.
		for i := 0; i < len(base); i++ {
			if base[i] != '-' {
				continue
			}
			if i+1 < len(base) && base[i+1] == '-' {
				i++
				continue
			}
			return strings.ReplaceAll(base[:i], "--", "-")
		}
		return ""
	case "disk", "md", "block", "char", "loop", "mqueue", "pts", "shm", "bus", "input", "net", "snd", "dri", "cpu", "fd":
		return ""
	}
	return dir
}

// Check returns nil when c may run, or an error wrapping ErrRefused.
func (g *Gate) Check(c Cmd) error {
	if c.Probe || kind(c.Name) == "" {
		return nil
	}
	ns, err := names(c)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.armed {
		return fmt.Errorf("%w: %s: no disk has passed this run's data check", ErrRefused, c)
	}
	for _, n := range ns {
		disks := g.owner(n)
		if len(disks) == 0 {
			return fmt.Errorf("%w: %s: %s cannot be traced to a disk that passed this run's data check", ErrRefused, c, display(n))
		}
		for _, d := range disks {
			if !g.allowed[d] {
				return fmt.Errorf("%w: %s: %s lies on %s, which did not pass this run's data check (eligible: %s)", ErrRefused, c, display(n), d, listOrNone(sortedSet(g.allowed)))
			}
		}
	}
	return nil
}

// CheckAll checks every command before the first one runs and reports
// every refusal.
func (g *Gate) CheckAll(cs []Cmd) error {
	var errs []error
	for _, c := range cs {
		if err := g.Check(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CheckDisks refuses whole disks that are not eligible.
func (g *Gate) CheckDisks(what string, disks []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var bad []string
	for _, d := range disks {
		if !g.armed || !g.allowed[d] {
			bad = append(bad, d)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s names %s, which did not pass this run's data check (eligible: %s; the boot medium, removable, read-only, ignored and unexamined disks never are)", ErrRefused, what, strings.Join(bad, ", "), listOrNone(sortedSet(g.allowed)))
	}
	return nil
}

func display(n string) string {
	switch {
	case strings.HasPrefix(n, "vg:"):
		return "volume group " + strings.TrimPrefix(n, "vg:")
	case strings.HasPrefix(n, "mount:"):
		return "mountpoint " + strings.TrimPrefix(n, "mount:")
	case n == "disko":
		return "the disko config"
	}
	return n
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, " ")
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Gated runs commands through a Gate: a refused command never reaches Inner.
type Gated struct {
	Gate  *Gate
	Inner Runner
	Log   *slog.Logger
}

// Run implements Runner.
func (g Gated) Run(ctx context.Context, c Cmd) (Result, error) {
	if err := g.Gate.Check(c); err != nil {
		if g.Log != nil {
			g.Log.Error("pre_nixos.command.refused", "command", c.String(), "error", err.Error())
		}
		return Result{ExitCode: 126}, err
	}
	return g.Inner.Run(ctx, c)
}

// Collector records commands without running them (probes included, which
// it answers with empty output): the dry pass that lets a caller check a
// whole command list before the first command executes.
type Collector struct{ Cmds *[]Cmd }

// Run implements Runner.
func (c Collector) Run(_ context.Context, cmd Cmd) (Result, error) {
	*c.Cmds = append(*c.Cmds, cmd)
	return Result{Skipped: true}, nil
}
