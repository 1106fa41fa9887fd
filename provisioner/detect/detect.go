// Package detect finds existing storage (partitions or signatures) on the
// disks pre-nixos could provision, excluding the disk the image booted from.
// Every probe goes through the Runner so tests pin the exact command set.
package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
	"github.com/bootlab/bootlab/provisioner/inventory"
)

// Deps are the seams to the machine.
type Deps struct {
	Runner execpolicy.Runner
	// Exists reports whether a path exists (following symlinks).
	Exists func(string) bool
	// Realpath resolves symlinks.
	Realpath func(string) (string, error)
	// Cmdline returns the kernel command line.
	Cmdline func() (string, error)
	Log     *slog.Logger
	// Mountinfo returns /proc/self/mountinfo: where the boot medium is looked for
	// when findmnt is not installed (nil: not looked for then).
	Mountinfo func() ([]byte, error)
	// Stack traces the boot medium through dm, md, partitions and loop
	// backing files to physical disks; the zero value only uses lsblk.
	Stack Stack
}

// OSDeps returns Deps for the running machine; procRoot holds cmdline.
func OSDeps(r execpolicy.Runner, procRoot string, log *slog.Logger) Deps {
	return Deps{
		Runner: r,
		Exists: func(p string) bool {
			_, err := os.Stat(p)
			return err == nil
		},
		Realpath: filepath.EvalSymlinks,
		Cmdline: func() (string, error) {
			b, err := os.ReadFile(filepath.Join(procRoot, "cmdline"))
			return string(b), err
		},
		Mountinfo: func() ([]byte, error) {
			return os.ReadFile(filepath.Join(procRoot, "self", "mountinfo"))
		},
		Log:   log,
		Stack: OSStack("/sys", procRoot),
	}
}

func (d Deps) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

func (d Deps) realpath(p string) string {
	if d.Realpath == nil {
		return p
	}
	r, err := d.Realpath(p)
	if err != nil {
		return p
	}
	return r
}

// Probe records one boot-disk lookup for the logs and cleanup diagnostics.
type Probe struct {
	Argument   string   `json:"argument"`
	Candidates []string `json:"candidates"`
	Exists     bool     `json:"exists"`
	Parent     string   `json:"parent,omitempty"`
	Resolved   string   `json:"resolved,omitempty"`
	// Disks are the physical disks under the medium (several when it is a
	// stack, e.g. dm on a partition or a loop file on another disk).
	Disks []string `json:"disks,omitempty"`
}

// MountTargets are all checked for the filesystem the image booted from.
// /run/live/medium is Debian live-boot's mount of the boot medium;
// /findiso, /run/findiso and /run/live/findiso hold the disk an ISO file
// was loop-mounted from (findiso=).
var MountTargets = []string{"/iso", "/run/archiso/bootmnt", "/nix/.ro-store", "/run/live/medium", "/findiso", "/run/findiso", "/run/live/findiso"}

// ResolveBootDisk returns the (first) whole disk the system booted from, or "".
func ResolveBootDisk(ctx context.Context, d Deps) (string, []Probe) {
	disks, probes := ResolveBootDisks(ctx, d)
	if len(disks) == 0 {
		return "", probes
	}
	return disks[0], probes
}

// ResolveBootDisks returns every physical disk under the medium the system
// booted from (none when it cannot be found). Every source is asked and the
// answers are united: the kernel command line (boot=LABEL=/UUID=, which can
// name an old copy of the image on another disk), what is mounted on the
// live mountpoints (MountTargets), squashfs and iso9660 mounts (loop devices
// traced to their backing files), each resolved through its dm/md stack.
// Stopping at the first answer left the disk actually mounted at /iso
// eligible.
func ResolveBootDisks(ctx context.Context, d Deps) ([]string, []Probe) {
	var probes []Probe
	set := map[string]bool{}
	var disks []string
	resolve := func(pr Probe) {
		for _, c := range pr.Candidates {
			if d.Exists(c) {
				pr.Exists = true
				for _, disk := range d.bootDisks(ctx, d.realpath(c), &pr) {
					if disk != "" && !set[disk] {
						set[disk] = true
						disks = append(disks, disk)
					}
				}
				break
			}
		}
		probes = append(probes, pr)
	}
	if d.Cmdline != nil {
		if line, err := d.Cmdline(); err == nil {
			for _, tok := range strings.Fields(line) {
				var path string
				switch {
				case strings.HasPrefix(tok, "boot=LABEL="):
					path = "/dev/disk/by-label/" + strings.TrimPrefix(tok, "boot=LABEL=")
				case strings.HasPrefix(tok, "boot=UUID="):
					path = "/dev/disk/by-uuid/" + strings.TrimPrefix(tok, "boot=UUID=")
				default:
					continue
				}
				resolve(Probe{Argument: tok, Candidates: []string{path}})
			}
		}
	}
	var sources []string
	noFindmnt := false
	for _, target := range MountTargets {
		res, err := d.Runner.Run(ctx, execpolicy.P("findmnt", "-n", "-o", "SOURCE", target))
		noFindmnt = noFindmnt || errors.Is(err, execpolicy.ErrNotFound)
		if err == nil && res.ExitCode == 0 {
			sources = append(sources, lines(res.Stdout)...)
		}
	}
	for _, fstype := range []string{"squashfs", "iso9660"} {
		res, err := d.Runner.Run(ctx, execpolicy.P("findmnt", "-nr", "-t", fstype, "-o", "SOURCE"))
		noFindmnt = noFindmnt || errors.Is(err, execpolicy.ErrNotFound)
		if err == nil && res.ExitCode == 0 {
			sources = append(sources, lines(res.Stdout)...)
		}
	}
	if noFindmnt {
		// A baseline without util-linux (busybox: the Debian installer, rescue
		// images) still has the kernel's mount table: the same questions are
		// answered from it, so a missing findmnt never reads as "no boot medium".
		sources = append(sources, d.mountinfoSources()...)
	}
	seen := map[string]bool{}
	for _, src := range sources {
		if seen[src] {
			continue
		}
		seen[src] = true
		resolve(Probe{Argument: src, Candidates: candidates(src)})
	}
	d.logBoot(disks, probes)
	return disks, probes
}

// mountinfoSources answers the findmnt questions above from mountinfo: the
// sources mounted on MountTargets, then those of squashfs and iso9660 mounts.
func (d Deps) mountinfoSources() []string {
	if d.Mountinfo == nil {
		return nil
	}
	data, err := d.Mountinfo()
	if err != nil {
		d.log().Warn("pre_nixos.storage.mountinfo_unreadable", "error", err.Error())
		return nil
	}
	type mount struct{ target, fstype, source string }
	var mounts []mount
	for _, line := range strings.Split(string(data), "\n") {
		// ID PARENT MAJ:MIN ROOT TARGET OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		mounts = append(mounts, mount{target: unescapeMount(f[4]), fstype: g[0], source: unescapeMount(g[1])})
	}
	var out []string
	for _, target := range MountTargets {
		for _, m := range mounts {
			if m.target == target {
				out = append(out, m.source)
			}
		}
	}
	for _, fstype := range []string{"squashfs", "iso9660"} {
		for _, m := range mounts {
			if m.fstype == fstype {
				out = append(out, m.source)
			}
		}
	}
	d.log().Info("pre_nixos.storage.boot_medium_from_mountinfo", "reason", "findmnt not installed", "sources", out)
	return out
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and
// backslash.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

func (d Deps) logBoot(disks []string, probes []Probe) {
	first := ""
	if len(disks) > 0 {
		first = disks[0]
	}
	d.log().Info("pre_nixos.storage.resolve_boot_disk", "boot_disk", first, "boot_disks", disks, "probes", probes)
}

// bootDisks resolves the medium dev to physical disks: lsblk's parent as
// before, then the sysfs stack from the device itself (dm on a partition,
// loop files), so the whole stack is excluded and not only its top.
func (d Deps) bootDisks(ctx context.Context, dev string, pr *Probe) []string {
	parent := d.parentDisk(ctx, dev, pr)
	disks, ok := d.Stack.Disks(dev)
	if !ok {
		disks, ok = d.Stack.Disks(parent)
	}
	if !ok {
		disks = []string{parent}
	}
	pr.Disks = disks
	return disks
}

// parentDisk maps a partition to its whole disk. lsblk prints PKNAME as a
// full path with -p; the Python pre-nixos prefixed /dev/ again and silently
// lost the boot disk on real hardware, so both forms are accepted.
func (d Deps) parentDisk(ctx context.Context, dev string, pr *Probe) string {
	res, err := d.Runner.Run(ctx, execpolicy.P("lsblk", "-npo", "PKNAME", dev))
	parent := ""
	if err == nil && res.ExitCode == 0 {
		if ls := lines(res.Stdout); len(ls) > 0 {
			parent = ls[0]
		}
	}
	pr.Parent = parent
	if parent == "" {
		pr.Resolved = dev
		return dev
	}
	if !strings.HasPrefix(parent, "/") {
		parent = "/dev/" + parent
	}
	pr.Resolved = d.realpath(parent)
	return pr.Resolved
}

func candidates(src string) []string {
	variants := []string{src}
	for _, v := range []string{strings.ReplaceAll(src, `\040`, " "), strings.ReplaceAll(src, `\040`, `\x20`)} {
		if v != variants[len(variants)-1] && v != src {
			variants = append(variants, v)
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, v := range variants {
		var c string
		switch {
		case strings.HasPrefix(v, "LABEL="):
			c = "/dev/disk/by-label/" + strings.TrimPrefix(v, "LABEL=")
		case strings.HasPrefix(v, "UUID="):
			c = "/dev/disk/by-uuid/" + strings.TrimPrefix(v, "UUID=")
		case strings.HasPrefix(v, "PARTUUID="):
			c = "/dev/disk/by-partuuid/" + strings.TrimPrefix(v, "PARTUUID=")
		case strings.HasPrefix(v, "PARTLABEL="):
			c = "/dev/disk/by-partlabel/" + strings.TrimPrefix(v, "PARTLABEL=")
		case strings.HasPrefix(v, "/"):
			c = v
		default:
			c = "/dev/" + v
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

func lines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Reasons a disk counts as holding existing storage.
const (
	ReasonPartitions = "partitions"
	ReasonSignatures = "signatures"
)

// Device is a disk with existing storage.
type Device struct {
	Device  string   `json:"device"`
	Reasons []string `json:"reasons"`
}

// Result is the outcome of a detection.
type Result struct {
	BootDisk string
	// BootDisks are all physical disks under the boot medium.
	BootDisks []string
	Probes    []Probe
	Devices   []Device
	// Candidates lists every eligible disk that was examined.
	Candidates []string
}

// ErrDetection wraps any failure that makes the answer unknown.
var ErrDetection = errors.New("storage detection failed")

// Detect resolves the boot disk and scans eligible disks.
func Detect(ctx context.Context, d Deps) (Result, error) {
	boots, probes := ResolveBootDisks(ctx, d)
	res := Result{BootDisks: boots, Probes: probes}
	if len(boots) > 0 {
		res.BootDisk = boots[0]
	}
	devs, cands, err := Scan(ctx, d, boots...)
	res.Devices, res.Candidates = devs, cands
	return res, err
}

// Scan examines every whole disk lsblk lists except ignored, removable and
// boot disks, in name order.
func Scan(ctx context.Context, d Deps, bootDisks ...string) ([]Device, []string, error) {
	isBoot := map[string]bool{}
	for _, b := range bootDisks {
		if b != "" {
			isBoot[b] = true
		}
	}
	bootDisk := strings.Join(bootDisks, " ")
	list := execpolicy.P("lsblk", "-dnpo", "NAME,TYPE,RM")
	res, err := d.Runner.Run(ctx, list)
	if err := execpolicy.Check(res, err, list); err != nil {
		return nil, nil, fmt.Errorf("%w: listing disks: %v", ErrDetection, err)
	}
	type cand struct{ name, resolved string }
	var cands []cand
	for _, line := range lines(res.Stdout) {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "disk" {
			continue
		}
		name := f[0]
		if !strings.HasPrefix(name, "/dev/") {
			return nil, nil, fmt.Errorf("%w: unexpected lsblk line %q (want /dev/NAME TYPE RM)", ErrDetection, line)
		}
		var reasons []string
		for _, p := range inventory.IgnoredPrefixes {
			if strings.HasPrefix(name, "/dev/"+p) {
				reasons = append(reasons, "ignored_prefix")
				break
			}
		}
		removable := len(f) > 2 && f[2] == "1"
		if removable {
			reasons = append(reasons, "removable_media")
		}
		resolved := d.realpath(name)
		if isBoot[resolved] || isBoot[name] {
			reasons = append(reasons, "boot_disk")
		}
		if len(reasons) > 0 {
			d.log().Info("pre_nixos.storage.device_filtered", "device", name, "resolved", resolved, "reasons", reasons, "removable", removable, "boot_disk", bootDisk)
			continue
		}
		cands = append(cands, cand{name, resolved})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].resolved < cands[j].resolved })
	var found []Device
	var names []string
	for _, c := range cands {
		var reasons []string
		out, gone, err := d.probe(ctx, c.name, execpolicy.P("lsblk", "-rno", "TYPE", c.name))
		if err != nil {
			return nil, nil, err
		}
		if gone {
			continue
		}
		if len(lines(out)) > 1 {
			reasons = append(reasons, ReasonPartitions)
		}
		out, gone, err = d.probe(ctx, c.name, execpolicy.P("wipefs", "-n", c.name))
		if err != nil {
			return nil, nil, err
		}
		if gone {
			continue
		}
		if len(lines(out)) > 0 {
			reasons = append(reasons, ReasonSignatures)
		}
		names = append(names, c.resolved)
		if len(reasons) == 0 {
			d.log().Info("pre_nixos.storage.device_filtered", "device", c.name, "resolved", c.resolved, "reasons", []string{"no_signatures"})
			continue
		}
		d.log().Info("pre_nixos.storage.device_detected", "device", c.resolved, "reasons", reasons)
		found = append(found, Device{Device: c.resolved, Reasons: reasons})
	}
	return found, names, nil
}

// probe runs c; exit 32 on a device that has vanished means "skip it".
func (d Deps) probe(ctx context.Context, dev string, c execpolicy.Cmd) ([]byte, bool, error) {
	res, err := d.Runner.Run(ctx, c)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s: %v", ErrDetection, c, err)
	}
	if res.ExitCode == 32 && !d.Exists(dev) {
		d.log().Info("pre_nixos.storage.device_vanished", "device", dev)
		return nil, true, nil
	}
	if err := execpolicy.Check(res, nil, c); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrDetection, err)
	}
	return res.Stdout, false, nil
}

// FormatReasons renders reasons for humans.
func FormatReasons(r []string) string {
	if len(r) == 0 {
		return "unknown"
	}
	return strings.Join(r, ", ")
}
