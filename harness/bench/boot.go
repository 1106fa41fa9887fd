package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
)

// BootVariant is one way of booting an image. The boot benchmark boots several, one
// after another in the same run, so each lever (boot path, CPUs, CPU model, TCG cache,
// memory, masked units) is compared against a baseline measured minutes apart on the
// same machine under the same load, not against a figure from another day.
type BootVariant struct {
	Name string
	// Image is "fixture" (the ISO, booted like a scenario: one 4 GiB disk, the LAN,
	// pre-nixos running) or "mini" (the reference: busybox in an initramfs).
	Image string
	// Boot is lab.BootFirmware or lab.BootDirect (fixture only).
	Boot     string
	CPUs     int
	MemoryMB int
	CPUModel string
	TBSizeMB int
	// Append is added to the kernel command line (direct boot only): e.g.
	// systemd.mask=UNIT, to measure masking a unit before baking it into the image.
	Append string
	// Base builds the fixture on another base (nil: the default one); CDROMBus puts
	// its CD-ROM on another bus (lab.Image.CDROMBus; "": the image's own).
	Base     *images.FixtureBase
	CDROMBus string
	// Why says what the variant isolates, for the table's reader.
	Why string
}

// BootVariants is the catalogue `bootlab bench --boot` picks from; the first two are
// always useful (the reference and today's default), the rest each change one lever
// from "fixture-direct".
var BootVariants = []BootVariant{
	{Name: "mini", Image: "mini", MemoryMB: 256, Why: "reference: busybox initramfs, no systemd"},
	{Name: "fixture-firmware", Image: "fixture", Boot: lab.BootFirmware, Why: "SeaBIOS + ISOLINUX, 1 CPU, 1 GiB (the scenarios' boot before this benchmark)"},
	{Name: "fixture-direct", Image: "fixture", Boot: lab.BootDirect, Why: "QEMU -kernel/-initrd, ISO as CD-ROM, the default base (lean initramfs and units)"},
	{Name: "fixture-direct-smp2", Image: "fixture", Boot: lab.BootDirect, CPUs: 2, Why: "MTTCG, two vCPUs"},
	{Name: "fixture-direct-cpumax", Image: "fixture", Boot: lab.BootDirect, CPUModel: "max", Why: "-cpu max"},
	{Name: "fixture-direct-tb1g", Image: "fixture", Boot: lab.BootDirect, TBSizeMB: 1024, Why: "TCG translation cache 1 GiB"},
	{Name: "fixture-direct-mem2g", Image: "fixture", Boot: lab.BootDirect, MemoryMB: 2048, Why: "2 GiB guest memory"},
	{Name: "fixture-direct-masked", Image: "fixture", Boot: lab.BootDirect, Append: maskArgs(MaskCandidates), Why: "units a provisioning boot never needs masked (systemd.mask=, what the image's layer would do)"},
	{Name: "fixture-direct-toram", Image: "fixture", Boot: lab.BootDirect, MemoryMB: 2048, Append: "toram", Why: "live-boot copies the squashfs to RAM first (one sequential read instead of page faults through the CD-ROM)"},
	// The lean-boot levers (issue 27), each one change from Debian's base booted as
	// fixture-debian boots it; fixture-lean is all of them together (the base adopted
	// as images.DefaultFixtureBase is lean initramfs and units, the CD-ROM on IDE).
	{Name: "fixture-debian", Image: "fixture", Boot: lab.BootDirect, Base: base(nil), CDROMBus: lab.CDROMIDE, Why: "Debian's base: every storage module in a gzip initramfs, every unit, zstd-3 squashfs in 128 KiB blocks, CD-ROM on IDE"},
	{Name: "fixture-scsicd", Image: "fixture", Boot: lab.BootDirect, Base: base(nil), CDROMBus: lab.CDROMSCSI, Why: "Debian's base, the CD-ROM on virtio-scsi"},
	{Name: "fixture-lean-initramfs", Image: "fixture", Boot: lab.BootDirect, Base: base(func(b *images.FixtureBase) { b.Initramfs = "lean" }), CDROMBus: lab.CDROMIDE, Why: "lean initramfs: a module list with virtio-rng, no RAID, network or graphics modules"},
	{Name: "fixture-lean-units", Image: "fixture", Boot: lab.BootDirect, Base: base(func(b *images.FixtureBase) { b.Units = "lean" }), CDROMBus: lab.CDROMIDE, Why: "timers and e2scrub_reap removed from the base"},
	{Name: "fixture-sq-lz4", Image: "fixture", Boot: lab.BootDirect, Base: base(func(b *images.FixtureBase) { b.Compressor, b.CompressionLevel = "lz4", 0 }), CDROMBus: lab.CDROMIDE, Why: "root squashfs lz4, 128 KiB blocks"},
	{Name: "fixture-sq-64k", Image: "fixture", Boot: lab.BootDirect, Base: base(func(b *images.FixtureBase) { b.BlockKB = 64 }), CDROMBus: lab.CDROMIDE, Why: "root squashfs zstd-3, 64 KiB blocks"},
	{Name: "fixture-lean", Image: "fixture", Boot: lab.BootDirect, Base: base(func(b *images.FixtureBase) { b.Initramfs, b.Units = "lean", "lean" }), CDROMBus: lab.CDROMSCSI, Why: "lean initramfs, lean units, CD-ROM on virtio-scsi"},
}

// base is Debian's fixture base with change applied (nil: none).
func base(change func(*images.FixtureBase)) *images.FixtureBase {
	b := images.DebianFixtureBase()
	if change != nil {
		change(&b)
	}
	return &b
}

// MaskCandidates are units a provisioning boot never needs: a getty nobody sees, timers
// for a system that lives minutes, LVM monitoring of mirrors and snapshots pre-nixos
// does not make, availability and pstore units that matter at shutdown or on EFI only.
var MaskCandidates = []string{
	"getty@tty1.service", "lvm2-monitor.service",
	"systemd-pstore.service", "modprobe@efi_pstore.service", "modprobe@drm.service",
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
	"e2scrub_reap.service", "fstrim.timer", "systemd-tmpfiles-clean.timer",
	"mdmonitor.service", "mdmonitor-oneshot.timer", "mdcheck_start.timer", "mdcheck_continue.timer",
}

func maskArgs(units []string) string {
	var b strings.Builder
	for i, u := range units {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("systemd.mask=" + u)
	}
	return b.String()
}

// FindBootVariants picks variants from the catalogue by name, in the order given.
func FindBootVariants(names []string) ([]BootVariant, error) {
	var out []BootVariant
	for _, n := range names {
		found := false
		for _, v := range BootVariants {
			if v.Name == n {
				out, found = append(out, v), true
				break
			}
		}
		if !found {
			var known []string
			for _, v := range BootVariants {
				known = append(known, v.Name)
			}
			return nil, fmt.Errorf("unknown boot variant %q (known: %s)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// BootPhases are the milestones the boot table shows, in boot order.
var BootPhases = []string{"first_output", "kernel", "init", "login_prompt", "root_shell"}

// BootResult is one variant's boot.
type BootResult struct {
	Variant BootVariant
	// At holds each milestone's time after QEMU was spawned (absent: not reached).
	At map[string]time.Duration
	// Analyze is `systemd-analyze time`'s summary line (empty without systemd);
	// Blame the slowest units, `systemd-analyze blame`'s first lines.
	Analyze string
	Blame   []string
	// Load is /proc/loadavg when the boot started: other work on the machine moves
	// TCG boots by whole factors, so every figure carries it.
	Load string
	// Kernel holds the kernel's own timestamps (seconds since it started) of the
	// moments between the milestones: initramfs start, switch to the real init, crng
	// ready, systemd's first line, read from the serial log.
	Kernel map[string]float64
	RunDir string
	Err    error
}

// RunBoot boots each variant in turn, logs in to a verified root shell and records where
// the time went. A variant that fails is recorded with its error and the run goes on.
func RunBoot(ctx context.Context, cfg config.Config, variants []BootVariant, blame int, progress io.Writer) []BootResult {
	// Every image first: a variant's base can take minutes to build, and a build
	// between two boots would load the machine under the second one.
	imgs := make([]lab.Image, len(variants))
	errs := make([]error, len(variants))
	for i, v := range variants {
		if ctx.Err() != nil {
			break
		}
		if progress != nil {
			fmt.Fprintf(progress, "bootlab bench: preparing the image of %s\n", v.Name)
		}
		imgs[i], errs[i] = variantImage(ctx, images.Cache(cfg.Cache), v)
	}
	var out []BootResult
	for i, v := range variants {
		if ctx.Err() != nil {
			break
		}
		if progress != nil {
			fmt.Fprintf(progress, "bootlab bench: booting %s (%s)\n", v.Name, v.Why)
		}
		var r BootResult
		if errs[i] != nil {
			r = BootResult{Variant: v, At: map[string]time.Duration{}, Load: loadAvg(), Err: errs[i]}
		} else {
			r = bootOne(ctx, cfg, v, imgs[i], blame, progress)
		}
		if progress != nil {
			fmt.Fprintf(progress, "bootlab bench: %s: %s\n", v.Name, r.summary())
		}
		out = append(out, r)
	}
	return out
}

func (r BootResult) summary() string {
	if r.Err != nil {
		return "failed: " + r.Err.Error()
	}
	var parts []string
	for _, p := range BootPhases {
		if d, ok := r.At[p]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1fs", p, d.Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}

func bootOne(ctx context.Context, cfg config.Config, v BootVariant, img lab.Image, blame int, progress io.Writer) BootResult {
	res := BootResult{Variant: v, At: map[string]time.Duration{}, Load: loadAvg()}
	spec := lab.Spec{Image: img}
	if v.Image == "fixture" {
		spec = fixtureSpec(ctx, images.Cache(cfg.Cache), img)
	}
	spec.MemoryMB, spec.CPUs, spec.CPUModel, spec.TBSizeMB = v.MemoryMB, v.CPUs, v.CPUModel, v.TBSizeMB
	l, err := lab.Start(ctx, cfg, lab.Slug("bench-boot-"+v.Name), lab.Machine(spec), lab.Progress(progress), lab.Captures(lab.CapturesNone))
	if err != nil {
		res.Err = err
		return res
	}
	res.RunDir = l.Dir()
	err = measureBoot(ctx, l, &res, blame)
	for _, m := range l.Milestones() {
		if _, seen := res.At[m.Name]; !seen {
			res.At[m.Name] = m.At
		}
	}
	cerr := l.Close(context.WithoutCancel(ctx), err)
	res.Err = errors.Join(err, cerr)
	if b, rerr := os.ReadFile(filepath.Join(res.RunDir, runrec.SerialLog)); rerr == nil {
		res.Kernel = KernelMarks(string(b))
	}
	return res
}

// KernelMarkNames are the kernel-timestamped lines KernelMarks looks for, in boot order.
var KernelMarkNames = []string{"initramfs", "switch_root", "crng", "systemd"}

var kernelMarkRes = map[string]*regexp.Regexp{
	"initramfs":   regexp.MustCompile(`\[\s*(\d+\.\d+)\] Run /init as init process`),
	"switch_root": regexp.MustCompile(`\[\s*(\d+\.\d+)\] (Not activating Mandatory Access Control|systemd\[1\]: Inserted module)`),
	"crng":        regexp.MustCompile(`\[\s*(\d+\.\d+)\] random: crng init done`),
	"systemd":     regexp.MustCompile(`\[\s*(\d+\.\d+)\] systemd\[1\]: systemd \d+`),
}

// KernelMarks finds the first occurrence of each KernelMarkNames line in a serial log.
func KernelMarks(serial string) map[string]float64 {
	out := map[string]float64{}
	for name, re := range kernelMarkRes {
		if m := re.FindStringSubmatch(serial); m != nil {
			if f, err := strconv.ParseFloat(m[1], 64); err == nil {
				out[name] = f
			}
		}
	}
	return out
}

// variantImage builds (or reuses) the variant's image and points it at the boot path.
func variantImage(ctx context.Context, cache images.Cache, v BootVariant) (lab.Image, error) {
	switch v.Image {
	case "mini":
		img, _, err := lab.MiniImage(ctx, cache, images.MiniSpec{})
		return img, err
	case "fixture":
		img, _, _, err := lab.FixtureImage(ctx, cache, images.FixtureSpec{Base: v.Base})
		if err != nil {
			return img, err
		}
		if v.CDROMBus != "" {
			img.CDROMBus = v.CDROMBus
		}
		if _, err := lab.ResolveISOBoot(ctx, cache, &img, v.Boot, ""); err != nil {
			return img, fmt.Errorf("resolving the fixture's %s boot: %w", v.Boot, err)
		}
		if v.Append != "" {
			if img.Kernel == "" {
				return img, fmt.Errorf("variant %s: an extra kernel command line needs --boot direct", v.Name)
			}
			img.Append += " " + v.Append
		}
		return img, nil
	}
	return lab.Image{}, fmt.Errorf("variant %s: unknown image %q", v.Name, v.Image)
}

func measureBoot(ctx context.Context, l *lab.Lab, res *BootResult, blame int) error {
	if _, err := l.Login(ctx); err != nil {
		return err
	}
	if res.Variant.Image != "fixture" {
		return nil
	}
	// systemd's own account of the boot. systemd-analyze refuses while jobs are still
	// running (pre-nixos applying the disk, waiting for a lease), so wait for the boot
	// to finish first: after the measurement, so it costs the benchmark, not the boot.
	// `time` is cheap; `blame` parses every unit (tens of seconds on a starved guest),
	// so only its first lines are kept.
	_, _ = l.Run(ctx, "timeout 240 systemctl is-system-running --wait", shell.AllowFail(), shell.Timeout(5*time.Minute))
	r, err := l.Run(ctx, "systemd-analyze time 2>&1 | head -n 2", shell.AllowFail(), shell.Timeout(2*time.Minute))
	if err == nil {
		res.Analyze = strings.Join(strings.Fields(strings.ReplaceAll(string(r.Output), "\n", " ")), " ")
	}
	if blame > 0 {
		r, err = l.Run(ctx, fmt.Sprintf("systemd-analyze blame --no-pager 2>&1 | head -n %d", blame), shell.AllowFail(), shell.Timeout(2*time.Minute))
		if err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(r.Output)), "\n") {
				if line = strings.TrimSpace(line); line != "" {
					res.Blame = append(res.Blame, line)
				}
			}
		}
	}
	return nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// BootTable renders the boot results as Markdown: one row per variant with each
// milestone's time after spawn, then systemd's own split and the slowest units.
func BootTable(results []BootResult) string {
	var b strings.Builder
	b.WriteString("| variant | load (1/5/15 min) | first output | kernel banner | init | `login:` | verified root | vs first fixture |\n|---|---|---|---|---|---|---|---|\n")
	var baseline time.Duration
	for _, r := range results {
		cell := func(p string) string {
			if d, ok := r.At[p]; ok {
				return fmt.Sprintf("%.1f s", d.Seconds())
			}
			return "-"
		}
		rel := ""
		if root, ok := r.At["root_shell"]; ok && r.Err == nil && r.Variant.Image == "fixture" {
			if baseline == 0 {
				baseline, rel = root, "1.00x"
			} else {
				rel = fmt.Sprintf("%.2fx", float64(root)/float64(baseline))
			}
		}
		if r.Err != nil {
			rel = "failed: " + firstLine(r.Err.Error())
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Variant.Name, r.Load,
			cell("first_output"), cell("kernel"), cell("init"), cell("login_prompt"), cell("root_shell"), rel)
	}
	b.WriteString("\n")
	for _, r := range results {
		if r.Analyze == "" && len(r.Blame) == 0 && len(r.Kernel) == 0 {
			continue
		}
		fmt.Fprintf(&b, "- %s (%s): %s", r.Variant.Name, r.Variant.Why, r.Analyze)
		if len(r.Kernel) > 0 {
			var ks []string
			for _, k := range KernelMarkNames {
				if v, ok := r.Kernel[k]; ok {
					ks = append(ks, fmt.Sprintf("%s %.1f", k, v))
				}
			}
			fmt.Fprintf(&b, "; kernel clock: %s", strings.Join(ks, ", "))
		}
		if len(r.Blame) > 0 {
			fmt.Fprintf(&b, "; slowest units: %s", strings.Join(r.Blame, "; "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// fixtureSpec boots the fixture as a scenario does: the LAN (networkd waits for it) and
// one blank 4 GiB disk for pre-nixos, which starts while the getty comes up. The KVM
// probe boots the mini kernel, whose verdict is cached already.
func fixtureSpec(ctx context.Context, cache images.Cache, img lab.Image) lab.Spec {
	spec := lab.Spec{Image: img, Net: true, SSH: true, Disks: []lab.Disk{{SizeMB: 4096}}}
	if mini, _, err := lab.MiniImage(ctx, cache, images.MiniSpec{}); err == nil {
		spec.ProbeKernel = mini.Kernel
	}
	return spec
}
