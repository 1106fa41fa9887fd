// Package cleanup tears down and wipes existing storage stacks (mounts, swap,
// LVM, md, device-mapper, loop) leaf to root, verifies nothing lingers and
// zaps each whole disk (docs/provisioner.md, "pre-nixos cleanup").
package cleanup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
)

// Action is a wipe method.
type Action string

// Actions.
const (
	WipeSignatures  Action = "wipe-signatures"
	Discard         Action = "discard"
	OverwriteRandom Action = "overwrite-random"
	Skip            Action = "skip"
)

// Options lists the operator choices with their keys and descriptions.
var Options = []struct {
	Key         string
	Action      Action
	Description string
}{
	{"1", WipeSignatures, "Wipe partition tables and filesystem signatures (fast)"},
	{"2", Discard, "Discard all blocks (SSD/NVMe only)"},
	{"3", OverwriteRandom, "Overwrite the entire device with random data (slow)"},
	{"s", Skip, "Skip wiping and continue"},
}

// ParseAction accepts an option key or an action name, case-insensitively.
// Unknown values are an error, not a crash as in the Python pre-nixos.
func ParseAction(s string) (Action, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" {
		return WipeSignatures, nil
	}
	var valid []string
	for _, o := range Options {
		if v == o.Key || v == string(o.Action) {
			return o.Action, nil
		}
		valid = append(valid, fmt.Sprintf("%s (%s)", o.Action, o.Key))
	}
	return "", fmt.Errorf("unknown cleanup action %q; valid actions: %s", s, strings.Join(valid, ", "))
}

// Config drives one cleanup.
type Config struct {
	Action  Action
	Devices []string
	// Execute is false for dry runs: commands are listed (the runner skips
	// them) and verification is not attempted.
	Execute bool
	Runner  execpolicy.Runner
	Log     *slog.Logger
	// Sleep waits between retries; tests pass a no-op.
	Sleep func(time.Duration)
	// Attempts for verification and partition refresh (default 3).
	Attempts int
	// Gate, when set, learns the stacks found and checks every command of
	// a pass before the first one runs.
	Gate *execpolicy.Gate
}

// ErrSpansNonTarget is wrapped when a stack under the targets also lies on
// a device outside them: tearing it down would destroy data there.
var ErrSpansNonTarget = errors.New("storage stack spans a device outside the cleanup targets")

type node struct {
	name        string
	typ         string
	fstype      string
	uuid        string
	pttype      string
	mountpoints []string
	parents     map[string]bool
	children    map[string]bool
	vgName      string
}

type graph map[string]*node

func (g graph) get(name string) *node {
	n := g[name]
	if n == nil {
		n = &node{name: name, typ: "unknown", parents: map[string]bool{}, children: map[string]bool{}}
		g[name] = n
	}
	return n
}

func (g graph) link(parent, child string) {
	if parent == "" || child == "" || parent == child {
		return
	}
	g.get(parent).children[child] = true
	g.get(child).parents[parent] = true
}

func (n *node) isArray() bool {
	return strings.HasPrefix(n.typ, "raid") || strings.HasPrefix(n.name, "/dev/md")
}

func (n *node) isRAID() bool { return n.isArray() || n.fstype == "linux_raid_member" }

func (n *node) isLVM() bool { return n.typ == "lvm" || n.typ == "lvm_lv" || n.typ == "lvm_vg" }

type lsblkDev struct {
	Name        string     `json:"name"`
	Type        string     `json:"type"`
	FSType      *string    `json:"fstype"`
	UUID        *string    `json:"uuid"`
	PTType      *string    `json:"pttype"`
	Mountpoint  *string    `json:"mountpoint"`
	Mountpoints []*string  `json:"mountpoints"`
	PKName      *string    `json:"pkname"`
	Children    []lsblkDev `json:"children"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// probeJSON runs a read-only probe. A missing tool or a non-zero exit means
// "nothing of that kind" (no LVM installed, no loop devices); output that is
// not the JSON we expect is an error, because tearing down from a
// misunderstood graph is worse than stopping.
func probeJSON(ctx context.Context, r execpolicy.Runner, c execpolicy.Cmd, v any) (bool, error) {
	res, err := r.Run(ctx, c)
	if err != nil || res.ExitCode != 0 || len(strings.TrimSpace(string(res.Stdout))) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(res.Stdout, v); err != nil {
		return false, fmt.Errorf("parsing output of %s: %w", c, err)
	}
	return true, nil
}

// mapperName is the /dev/mapper name of an LV; dm doubles hyphens.
func mapperName(vg, lv string) string {
	return "/dev/mapper/" + strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// buildGraph collects the block device stack from lsblk, LVM and losetup.
func buildGraph(ctx context.Context, r execpolicy.Runner) (graph, error) {
	g := graph{}
	var ls struct {
		BlockDevices []lsblkDev `json:"blockdevices"`
	}
	lsCmd := execpolicy.P("lsblk", "--json", "--paths", "--output-all")
	res, err := r.Run(ctx, lsCmd)
	if err := execpolicy.Check(res, err, lsCmd); err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	if err := json.Unmarshal(res.Stdout, &ls); err != nil {
		return nil, fmt.Errorf("parsing output of %s: %w", lsCmd, err)
	}
	var walk func(d lsblkDev, parent string, depth int) error
	walk = func(d lsblkDev, parent string, depth int) error {
		if depth > 64 {
			return errors.New("parsing lsblk JSON: nesting deeper than 64 levels")
		}
		if d.Name == "" {
			return errors.New("parsing lsblk JSON: device without a name")
		}
		n := g.get(d.Name)
		if n.typ == "unknown" && d.Type != "" {
			n.typ = d.Type
		}
		if n.fstype == "" {
			n.fstype = str(d.FSType)
		}
		if n.uuid == "" {
			n.uuid = str(d.UUID)
		}
		if n.pttype == "" {
			n.pttype = str(d.PTType)
		}
		mps := []string{str(d.Mountpoint)}
		for _, m := range d.Mountpoints {
			mps = append(mps, str(m))
		}
		for _, m := range mps {
			if m != "" && !contains(n.mountpoints, m) {
				n.mountpoints = append(n.mountpoints, m)
			}
		}
		g.link(parent, d.Name)
		if pk := str(d.PKName); pk != "" {
			g.link(pk, d.Name)
		}
		for _, c := range d.Children {
			if err := walk(c, d.Name, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range ls.BlockDevices {
		if err := walk(d, "", 0); err != nil {
			return nil, err
		}
	}

	var vgs struct {
		Report []struct {
			VG []struct {
				Name string `json:"vg_name"`
			} `json:"vg"`
		} `json:"report"`
	}
	if _, err := probeJSON(ctx, r, execpolicy.P("vgs", "--reportformat", "json", "-o", "vg_name"), &vgs); err != nil {
		return nil, err
	}
	for _, rep := range vgs.Report {
		for _, vg := range rep.VG {
			if vg.Name != "" {
				g.get("lvm-vg:" + vg.Name).typ = "lvm_vg"
			}
		}
	}
	var pvs struct {
		Report []struct {
			PV []struct {
				Name string `json:"pv_name"`
				VG   string `json:"vg_name"`
			} `json:"pv"`
		} `json:"report"`
	}
	if _, err := probeJSON(ctx, r, execpolicy.P("pvs", "--reportformat", "json", "-o", "pv_name,vg_name"), &pvs); err != nil {
		return nil, err
	}
	for _, rep := range pvs.Report {
		for _, pv := range rep.PV {
			if pv.Name == "" {
				continue
			}
			n := g.get(pv.Name)
			n.vgName = pv.VG
			if pv.VG != "" {
				vg := g.get("lvm-vg:" + pv.VG)
				vg.typ = "lvm_vg"
				g.link(pv.Name, vg.name)
			}
		}
	}
	var lvs struct {
		Report []struct {
			LV []struct {
				Path string `json:"lv_path"`
				VG   string `json:"vg_name"`
			} `json:"lv"`
		} `json:"report"`
	}
	if _, err := probeJSON(ctx, r, execpolicy.P("lvs", "--reportformat", "json", "-o", "lv_path,vg_name"), &lvs); err != nil {
		return nil, err
	}
	for _, rep := range lvs.Report {
		for _, lv := range rep.LV {
			if lv.Path == "" || lv.VG == "" {
				continue
			}
			n := g.get(lv.Path)
			n.typ = "lvm_lv"
			g.link("lvm-vg:"+lv.VG, lv.Path)
			// lsblk names the same LV /dev/mapper/vg-lv; fold it into the
			// /dev/vg/lv node so it is deactivated and removed once.
			lvName := lv.Path[strings.LastIndex(lv.Path, "/")+1:]
			if m, ok := g[mapperName(lv.VG, lvName)]; ok && m != n {
				g.merge(m, n)
			}
		}
	}
	var loops struct {
		Loops []struct {
			Name     string `json:"name"`
			BackFile string `json:"back-file"`
		} `json:"loopdevices"`
	}
	if _, err := probeJSON(ctx, r, execpolicy.P("losetup", "--list", "--json"), &loops); err != nil {
		return nil, err
	}
	for _, l := range loops.Loops {
		if l.Name == "" {
			continue
		}
		g.get(l.Name).typ = "loop"
		if l.BackFile != "" {
			g.get(l.BackFile).typ = "file"
			g.link(l.BackFile, l.Name)
		}
	}
	return g, nil
}

// merge moves from's edges and mounts into into and drops from.
func (g graph) merge(from, into *node) {
	for p := range from.parents {
		delete(g[p].children, from.name)
		g.link(p, into.name)
	}
	for c := range from.children {
		delete(g[c].parents, from.name)
		g.link(into.name, c)
	}
	for _, m := range from.mountpoints {
		if !contains(into.mountpoints, m) {
			into.mountpoints = append(into.mountpoints, m)
		}
	}
	if into.fstype == "" {
		into.fstype = from.fstype
	}
	delete(g, from.name)
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// order returns the nodes reachable from roots, leaves first.
func (g graph) order(roots []string) []*node {
	reach := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if reach[n] {
			return
		}
		reach[n] = true
		for c := range g[n].children {
			visit(c)
		}
	}
	for _, r := range roots {
		// Planned-but-absent devices (partitions not created yet, md names
		// from the plan) have nothing to tear down; the Python pre-nixos zapped
		// them too and failed on the missing device.
		if g[r] != nil {
			visit(r)
		}
	}
	depth := map[string]int{}
	onStack := map[string]bool{}
	var dfs func(string) int
	dfs = func(n string) int {
		if d, ok := depth[n]; ok {
			return d
		}
		if onStack[n] {
			return 0
		}
		onStack[n] = true
		d := 0
		for c := range g[n].children {
			d = max(d, 1+dfs(c))
		}
		onStack[n] = false
		depth[n] = d
		return d
	}
	var out []*node
	for n := range reach {
		dfs(n)
		out = append(out, g[n])
	}
	sort.Slice(out, func(i, j int) bool {
		di, dj := depth[out[i].name], depth[out[j].name]
		if di != dj {
			return di < dj
		}
		return out[i].name < out[j].name
	})
	return out
}

type run struct {
	cfg      Config
	log      *slog.Logger
	commands []string
	device   string
}

func (r *run) cmd(ctx context.Context, c execpolicy.Cmd, allowed ...int) error {
	line := c.String()
	r.commands = append(r.commands, line)
	r.log.Info("pre_nixos.cleanup.command", "action", string(r.cfg.Action), "device", r.device, "command", line, "execute", r.cfg.Execute)
	res, err := r.cfg.Runner.Run(ctx, c)
	if err == nil && res.ExitCode != 0 && execpolicy.Check(res, nil, c, allowed...) == nil {
		r.log.Info("pre_nixos.cleanup.command_nonzero", "command", line, "returncode", res.ExitCode)
	}
	if err := execpolicy.Check(res, err, c, allowed...); err != nil {
		r.log.Warn("pre_nixos.cleanup.command_failed", "command", line, "error", err.Error())
		return err
	}
	return nil
}

// Run performs the cleanup and returns every command line it issued.
func Run(ctx context.Context, cfg Config) ([]string, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Sleep == nil {
		cfg.Sleep = time.Sleep
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	switch cfg.Action {
	case WipeSignatures, Discard, OverwriteRandom, Skip:
	default:
		return nil, fmt.Errorf("unknown cleanup action %q", cfg.Action)
	}
	r := &run{cfg: cfg, log: cfg.Log}
	r.log.Info("pre_nixos.cleanup.start", "action", string(cfg.Action), "devices", cfg.Devices, "execute", cfg.Execute)
	if cfg.Action == Skip || len(cfg.Devices) == 0 {
		r.log.Info("pre_nixos.cleanup.finished", "commands", []string{})
		return nil, nil
	}
	// Phases A-C run twice at most: udev can re-assemble an md array from
	// members between its stop and their superblock wipe, and a second
	// teardown from a fresh graph catches that.
	var g graph
	for pass := 1; ; pass++ {
		var err error
		g, err = buildGraph(ctx, cfg.Runner)
		if err != nil {
			return r.commands, fmt.Errorf("cleanup: %w", err)
		}
		if err := r.checkExamined(g); err != nil {
			r.log.Error("pre_nixos.cleanup.refused", "error", err.Error(), "devices", cfg.Devices)
			return r.commands, fmt.Errorf("cleanup: %w", err)
		}
		if err := g.checkSpan(cfg.Devices); err != nil {
			r.log.Error("pre_nixos.cleanup.refused", "error", err.Error(), "devices", cfg.Devices)
			return r.commands, fmt.Errorf("cleanup: %w", err)
		}
		if err := r.preflight(ctx, g); err != nil {
			r.log.Error("pre_nixos.cleanup.refused", "error", err.Error(), "devices", cfg.Devices)
			return r.commands, fmt.Errorf("cleanup: %w", err)
		}
		r.teardown(ctx, g)
		if !cfg.Execute {
			break
		}
		err = r.verify(ctx)
		if err == nil {
			break
		}
		if pass == 2 {
			return r.commands, err
		}
		r.log.Warn("pre_nixos.cleanup.retry", "error", err.Error())
	}

	// Phase D: per whole disk.
	var errs []error
	for _, dev := range cfg.Devices {
		n := g[dev]
		if n == nil || n.typ != "disk" {
			r.log.Info("pre_nixos.cleanup.zap_skipped", "device", dev, "reason", "not a whole disk present in lsblk")
			continue
		}
		r.device = dev
		if err := r.cmd(ctx, execpolicy.C("sgdisk", "--zap-all", dev), 2); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.refresh(ctx, dev); err != nil {
			r.log.Warn("pre_nixos.cleanup.partition_refresh_failed", "device", dev, "error", err.Error(), "snapshot", snapshot(ctx, cfg.Runner))
			errs = append(errs, err)
			continue
		}
		switch cfg.Action {
		case Discard:
			if err := r.cmd(ctx, execpolicy.C("blkdiscard", "--force", dev)); err != nil {
				errs = append(errs, err)
				continue
			}
		case OverwriteRandom:
			if err := r.cmd(ctx, execpolicy.C("shred", "-n", "1", "-vz", dev)); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := r.cmd(ctx, execpolicy.C("wipefs", "-a", dev)); err != nil {
			res, _ := cfg.Runner.Run(ctx, execpolicy.P("findmnt", "-rn", "-o", "TARGET,SOURCE", "-T", dev))
			r.log.Warn("pre_nixos.cleanup.wipefs_failed", "device", dev, "error", err.Error(), "findmnt", string(res.Stdout))
			errs = append(errs, err)
		}
	}
	r.log.Info("pre_nixos.cleanup.finished", "commands", r.commands)
	if len(errs) > 0 {
		return r.commands, fmt.Errorf("cleanup: %w", errors.Join(errs...))
	}
	return r.commands, nil
}

// checkSpan refuses when a device reached from the targets has a parent
// that is not itself reached: an md array with a member on another disk, a
// VG with a PV elsewhere. The teardown would stop, wipe and remove it on
// the other disk too (the Python pre-nixos zeroed /dev/sdc1 and removed VG "data"
// while cleaning /dev/sdb).
func (g graph) checkSpan(roots []string) error {
	nodes := g.order(roots)
	reached := map[string]bool{}
	for _, n := range nodes {
		reached[n.name] = true
	}
	var msgs []string
	for _, n := range nodes {
		for _, p := range sortedKeys(n.parents) {
			if reached[p] || g[p] == nil || g[p].typ == "file" {
				continue
			}
			// Only devices count: a VG whose PVs LVM did not report traces
			// to no device and says nothing about other disks.
			var outside []string
			for _, d := range g.disksUnder(p) {
				if !reached[d] && strings.HasPrefix(d, "/dev/") {
					outside = append(outside, d)
				}
			}
			if len(outside) == 0 {
				continue
			}
			msgs = append(msgs, fmt.Sprintf("%s also uses %s (on %s)", display(n.name), display(p), strings.Join(outside, ", ")))
		}
	}
	msgs = append(msgs, g.checkUUIDSpan(reached)...)
	if len(msgs) > 0 {
		return fmt.Errorf("%w (targets %s): %s; nothing was run", ErrSpansNonTarget, strings.Join(roots, " "), strings.Join(msgs, "; "))
	}
	return nil
}

// multiDevice are the filesystem types whose members share one UUID
// (the filesystem's, pool's or array's) across devices: btrfs raid, ZFS
// pools, bcachefs and md members. lsblk does not link them when the
// filesystem spans disks without a device on top (btrfs, ZFS) or the
// array is not assembled, so they are linked here by (type, UUID).
var multiDevice = map[string]string{
	"btrfs": "btrfs filesystem", "zfs_member": "ZFS pool", "bcachefs": "bcachefs filesystem",
	"linux_raid_member": "md array",
}

// checkUUIDSpan refuses when a member of a multi-device filesystem is
// reached from the targets and another member is not: wiping one member
// breaks the filesystem or pool on the other disk.
func (g graph) checkUUIDSpan(reached map[string]bool) []string {
	type key struct{ fstype, uuid string }
	members := map[key][]string{}
	for name, n := range g {
		if _, ok := multiDevice[n.fstype]; ok && n.uuid != "" {
			k := key{n.fstype, n.uuid}
			members[k] = append(members[k], name)
		}
	}
	var msgs []string
	for k, ms := range members {
		sort.Strings(ms)
		var in, out []string
		for _, m := range ms {
			if reached[m] {
				in = append(in, m)
				continue
			}
			for _, d := range g.disksUnder(m) {
				if !reached[d] && strings.HasPrefix(d, "/dev/") {
					out = append(out, m+" on "+d)
				}
			}
		}
		if len(in) > 0 && len(out) > 0 {
			msgs = append(msgs, fmt.Sprintf("%s is a member of %s %s, which also has %s", strings.Join(in, ", "), multiDevice[k.fstype], k.uuid, strings.Join(out, ", ")))
		}
	}
	sort.Strings(msgs)
	return msgs
}

// ErrChanged is wrapped when a target disk is no longer what this run's
// data check examined.
var ErrChanged = errors.New("disk changed since storage detection examined it")

// checkExamined refuses a target disk that differs from what the data
// check saw: another disk under the name (serial, WWN or size), or data on
// a disk examined blank. Only an executing cleanup with a gate checks.
func (r *run) checkExamined(g graph) error {
	gate := r.cfg.Gate
	if gate == nil || !r.cfg.Execute {
		return nil
	}
	var msgs []string
	for _, dev := range r.cfg.Devices {
		e, ok := gate.ExaminedAs(dev)
		if !ok {
			continue
		}
		if now, ok := gate.Identify(dev); ok && now != e.Identity {
			msgs = append(msgs, fmt.Sprintf("%s was examined as %s and now reads %s", dev, e.Identity, now))
			continue
		}
		n := g[dev]
		if e.HasData || n == nil {
			continue
		}
		var found []string
		if n.pttype != "" {
			found = append(found, "a "+n.pttype+" partition table")
		}
		if n.fstype != "" {
			found = append(found, "a "+n.fstype+" signature")
		}
		found = append(found, sortedKeys(n.children)...)
		for _, m := range n.mountpoints {
			found = append(found, "mounted at "+m)
		}
		for _, nd := range g.order([]string{dev}) {
			if nd.name == dev {
				continue
			}
			for _, m := range nd.mountpoints {
				found = append(found, nd.name+" mounted at "+m)
			}
		}
		if len(found) > 0 {
			msgs = append(msgs, fmt.Sprintf("%s was examined blank and now holds %s", dev, strings.Join(found, ", ")))
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%w: %s; nothing was run", ErrChanged, strings.Join(msgs, "; "))
	}
	return nil
}

func display(name string) string {
	if vg, ok := strings.CutPrefix(name, "lvm-vg:"); ok {
		return "volume group " + vg
	}
	return name
}

// disksUnder returns the whole disks (nodes of type disk, or roots) under
// name, following parents.
func (g graph) disksUnder(name string) []string {
	set := map[string]bool{}
	seen := map[string]bool{}
	var up func(string, int)
	up = func(n string, depth int) {
		if seen[n] || depth > 64 || g[n] == nil {
			return
		}
		seen[n] = true
		nd := g[n]
		if nd.typ == "disk" || (len(nd.parents) == 0 && nd.typ != "file") {
			set[n] = true
			return
		}
		for p := range nd.parents {
			up(p, depth+1)
		}
	}
	up(name, 0)
	return sortedKeys(set)
}

// preflight teaches the gate which disks each device, VG and mountpoint of
// the graph lies on, then checks the whole pass (teardown, collected dry,
// plus the per-disk wipe) before anything runs.
func (r *run) preflight(ctx context.Context, g graph) error {
	gate := r.cfg.Gate
	if gate == nil || !r.cfg.Execute {
		return nil
	}
	for name, n := range g {
		disks := g.disksUnder(name)
		if len(disks) == 0 {
			continue
		}
		key := name
		if vg, ok := strings.CutPrefix(name, "lvm-vg:"); ok {
			key = "vg:" + vg
		}
		gate.Learn(key, disks)
		for _, m := range n.mountpoints {
			if m != "[SWAP]" {
				gate.Learn("mount:"+m, disks)
			}
		}
	}
	var cmds []execpolicy.Cmd
	dry := &run{cfg: r.cfg, log: slog.New(slog.DiscardHandler)}
	dry.cfg.Runner = execpolicy.Collector{Cmds: &cmds}
	dry.cfg.Execute = false
	dry.teardown(ctx, g)
	for _, dev := range r.cfg.Devices {
		if n := g[dev]; n != nil && n.typ == "disk" {
			cmds = append(cmds, execpolicy.C("sgdisk", "--zap-all", dev), execpolicy.C("wipefs", "-a", dev))
		}
	}
	return gate.CheckAll(cmds)
}

// teardown runs phase A (deactivate) and phase B (wipe metadata), leaf to
// root. Failures are tolerated and summarised: a half-built stack from an
// interrupted run must not stop the wipe.
func (r *run) teardown(ctx context.Context, g graph) {
	nodes := g.order(r.cfg.Devices)

	// Phase A: teardown. Failures are tolerated: a half-built stack from an
	// interrupted run must not stop the wipe.
	failed := false
	var mounts []string
	for _, n := range nodes {
		for _, m := range n.mountpoints {
			if m != "[SWAP]" && !contains(mounts, m) {
				mounts = append(mounts, m)
			}
		}
	}
	// Deepest mount first, so /mnt/home goes before /mnt.
	sort.Slice(mounts, func(i, j int) bool {
		ci, cj := strings.Count(mounts[i], "/"), strings.Count(mounts[j], "/")
		if ci != cj {
			return ci > cj
		}
		return mounts[i] > mounts[j]
	})
	for _, m := range mounts {
		failed = r.cmd(ctx, execpolicy.C("umount", m)) != nil || failed
	}
	for _, n := range nodes {
		if n.fstype == "swap" || contains(n.mountpoints, "[SWAP]") {
			r.device = n.name
			failed = r.cmd(ctx, execpolicy.C("swapoff", n.name)) != nil || failed
		}
	}
	for _, n := range nodes {
		r.device = n.name
		switch {
		case n.typ == "lvm" || n.typ == "lvm_lv":
			failed = r.cmd(ctx, execpolicy.C("lvchange", "-an", n.name)) != nil || failed
		case n.typ == "lvm_vg":
			failed = r.cmd(ctx, execpolicy.C("vgchange", "-an", strings.TrimPrefix(n.name, "lvm-vg:"))) != nil || failed
		case n.isArray():
			failed = r.cmd(ctx, execpolicy.C("mdadm", "--stop", "--force", n.name)) != nil || failed
			for _, p := range sortedKeys(n.parents) {
				if strings.HasPrefix(p, "lvm-vg:") {
					continue
				}
				failed = r.cmd(ctx, execpolicy.C("mdadm", "--zero-superblock", "--force", p)) != nil || failed
			}
		case n.typ == "crypt" || n.typ == "dm" || strings.HasPrefix(n.name, "/dev/dm"):
			failed = r.cmd(ctx, execpolicy.C("dmsetup", "remove", n.name)) != nil || failed
		case n.typ == "loop":
			failed = r.cmd(ctx, execpolicy.C("losetup", "-d", n.name)) != nil || failed
		}
	}
	if failed {
		r.log.Warn("pre_nixos.cleanup.teardown_failed", "snapshot", snapshot(ctx, r.cfg.Runner))
	}

	// Phase B: metadata wipe, same order.
	failed = false
	for _, n := range nodes {
		r.device = n.name
		switch {
		case n.typ == "file":
			continue
		case n.typ == "lvm" || n.typ == "lvm_lv":
			failed = r.cmd(ctx, execpolicy.C("wipefs", "-a", n.name)) != nil || failed
			failed = r.cmd(ctx, execpolicy.C("lvremove", "-fy", n.name)) != nil || failed
			continue
		case n.typ == "lvm_vg":
			failed = r.cmd(ctx, execpolicy.C("vgremove", "-ff", "-y", strings.TrimPrefix(n.name, "lvm-vg:"))) != nil || failed
			continue
		}
		if n.vgName != "" {
			failed = r.cmd(ctx, execpolicy.C("pvremove", "-ff", "-y", n.name)) != nil || failed
		}
		if n.isRAID() {
			failed = r.cmd(ctx, execpolicy.C("mdadm", "--zero-superblock", "--force", n.name)) != nil || failed
		}
		failed = r.cmd(ctx, execpolicy.C("wipefs", "-a", n.name)) != nil || failed
	}
	if failed {
		r.log.Warn("pre_nixos.cleanup.descendant_wipe_failed")
	}

}

// Refresh re-reads dev's partition table: blockdev (busy tolerated),
// partprobe (1 tolerated), udevadm settle; retried.
func Refresh(ctx context.Context, runner execpolicy.Runner, dev string, attempts int, sleep func(time.Duration)) error {
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			sleep(500 * time.Millisecond)
		}
		last = nil
		for _, step := range []struct {
			c  execpolicy.Cmd
			ok []int
		}{
			{execpolicy.C("blockdev", "--rereadpt", dev), []int{16}},
			{execpolicy.C("partprobe", dev), []int{1}},
			{execpolicy.C("udevadm", "settle"), nil},
		} {
			res, err := runner.Run(ctx, step.c)
			if err := execpolicy.Check(res, err, step.c, step.ok...); err != nil {
				last = err
				break
			}
		}
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("re-reading the partition table of %s: %w", dev, last)
}

func (r *run) refresh(ctx context.Context, dev string) error {
	rec := recorder{inner: r.cfg.Runner, r: r}
	return Refresh(ctx, rec, dev, r.cfg.Attempts, r.cfg.Sleep)
}

type recorder struct {
	inner execpolicy.Runner
	r     *run
}

func (rc recorder) Run(ctx context.Context, c execpolicy.Cmd) (execpolicy.Result, error) {
	rc.r.commands = append(rc.r.commands, c.String())
	rc.r.log.Info("pre_nixos.cleanup.command", "action", string(rc.r.cfg.Action), "device", rc.r.device, "command", c.String(), "execute", rc.r.cfg.Execute)
	return rc.inner.Run(ctx, c)
}

func (r *run) verify(ctx context.Context) error {
	var md, lvm []string
	for i := 0; i < r.cfg.Attempts; i++ {
		if i > 0 {
			r.cfg.Sleep(500 * time.Millisecond)
		}
		g, err := buildGraph(ctx, r.cfg.Runner)
		if err != nil {
			return fmt.Errorf("cleanup verification: %w", err)
		}
		md, lvm = nil, nil
		for _, n := range g.order(r.cfg.Devices) {
			switch {
			case n.isRAID():
				md = append(md, n.name)
			case n.isLVM():
				lvm = append(lvm, n.name)
			}
		}
		if len(md)+len(lvm) == 0 {
			r.log.Info("pre_nixos.cleanup.verification_passed", "attempt", i+1)
			return nil
		}
		r.log.Info("pre_nixos.cleanup.verification_pending", "attempt", i+1, "lingering_md", md, "lingering_lvm", lvm)
	}
	r.log.Error("pre_nixos.cleanup.verification_failed", "lingering_md", md, "lingering_lvm", lvm, "snapshot", snapshot(ctx, r.cfg.Runner))
	return fmt.Errorf("cleanup verification failed: lingering md/LVM devices remain: %s", strings.Join(append(md, lvm...), ", "))
}

// snapshot captures the storage stack for diagnostics.
func snapshot(ctx context.Context, r execpolicy.Runner) map[string]string {
	out := map[string]string{}
	for _, p := range []struct {
		key string
		c   execpolicy.Cmd
	}{
		{"mdadm_detail_scan", execpolicy.P("mdadm", "--detail", "--scan")},
		{"dmsetup_tree", execpolicy.P("dmsetup", "ls", "--tree")},
	} {
		res, err := r.Run(ctx, p.c)
		if err != nil {
			out[p.key] = err.Error()
			continue
		}
		out[p.key] = string(res.Stdout) + string(res.Stderr)
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
