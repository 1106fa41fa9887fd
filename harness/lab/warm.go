package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/cacheprune"
	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/frame"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// Boot once, restore many (issue 15): a warm start resumes a guest from a state saved
// the first time, instead of booting it again. What makes the saved state reusable is
// where it was taken: the guest booted to getty.target (HoldAppend), so it has a root
// shell on the console but nothing multi-user.target pulls in has run (no pre-nixos,
// no networkd, no sshd), and it was booted without disks. A restored guest is given the
// run's disks (hot-plugged, udev settled), then starts its default target: the rest of
// the boot, with pre-nixos, the LAN and sshd in their usual order, happens in the run
// that reports on it. What a warm start does not prove is the boot up to getty.target;
// scenarios whose subject is the boot itself keep cold boots (docs/benchmarks.md).

// HoldAppend is what a held boot adds to the kernel command line: systemd's initial
// target is getty.target (basic system plus the console getty) instead of the default.
const HoldAppend = "systemd.unit=getty.target"

// warmState is the sidecar of a saved state: what it was saved from, so a restore uses
// the same accelerator and a person can tell states apart.
type warmState struct {
	Key     string    `json:"key"`
	Inputs  []string  `json:"inputs"`
	Accel   string    `json:"accel"`
	Saved   time.Time `json:"saved"`
	FromRun string    `json:"from_run"`
	Bytes   int64     `json:"bytes"`
}

// WarmEligible says whether cfg's VM can start warm, or why not: the kernel is booted
// directly (the hold goes on its command line) and the image runs systemd with pre-nixos
// (its profile names the unit). Its disks do not matter: the saved guest had none, and
// this run's are hot-plugged after the restore (restoreWarm), so a disk that holds data
// is as new to the restored guest as to a booting one.
func WarmEligible(cfg Options) error {
	img := cfg.VM.Image
	switch {
	case img.Kernel == "":
		return errors.New("the image is not booted directly (a warm state needs the hold on the kernel command line)")
	case img.Profile.PreNixosUnit == "":
		return fmt.Errorf("the %s profile has no systemd default target to release", img.Profile.Name)
	case cfg.VM.RestoreFrom != "":
		return errors.New("the VM already restores a state")
	}
	return nil
}

// warmKey names a state by everything the guest's saved memory and devices depend on:
// the image files (path, size, modification time: the image cache never rewrites one
// in place), the command line, memory, CPUs, devices, the accelerator asked for, and
// QEMU's binary and version (a state loads only into the QEMU that wrote it). Not the
// disks: the state is saved without any and every run hot-plugs its own, so one state
// serves every device set of an image and machine.
func warmKey(ctx context.Context, cfg Options) (string, []string, error) {
	s := cfg.VM
	bin, err := qemu.FindBinary(s.Binary)
	if err != nil {
		return "", nil, err
	}
	ver, err := qemu.Version(ctx, bin)
	if err != nil {
		return "", nil, fmt.Errorf("reading QEMU's version for the warm state's key: %w", err)
	}
	in := []string{"qemu " + bin + " " + ver}
	for _, p := range []string{s.Image.Kernel, s.Image.Initrd, s.Image.ISO} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", nil, fmt.Errorf("reading the image for the warm state's key: %w", err)
		}
		abs, _ := filepath.Abs(p)
		in = append(in, fmt.Sprintf("file %s %d %d", abs, fi.Size(), fi.ModTime().UnixNano()))
	}
	in = append(in, "append "+s.Image.Append, "profile "+s.Image.Profile.Name, "cdrom "+s.Image.CDROMBus,
		fmt.Sprintf("machine mem=%d cpus=%d cpu=%q tb=%d net=%v ssh=%v nochannel=%v accel=%q",
			s.MemoryMB, s.CPUs, s.CPUModel, s.TBSizeMB, s.Net, s.SSH, s.NoChannel, s.Accel))
	in = append(in, "disks hot-plugged after the restore (virtio-blk, scsi-hd on scsi0)")
	h := sha256.Sum256([]byte(strings.Join(in, "\n")))
	return hex.EncodeToString(h[:10]), in, nil
}

// Variant is an image that differs from Base only in Files (a broken unit's drop-in,
// another root key: images.FixtureSpec.VariantFiles). A warm start of it restores
// Base's saved guest and writes Files into it before the release, each with its mode,
// and reloads systemd's units when one is a unit file, so every such variant shares
// Base's one state instead of a held boot and a state of its own; a cold boot (a state
// that will not load) boots the variant's own image. A file may not change a unit the
// saved guest has already started: that variant boots cold, saying why.
type Variant struct {
	Base  vm.Image
	Files map[string]images.File
}

// StartWarm starts the VM opts describe from the warm state in conf's cache
// (WarmStateDir) that matches it, saving one
// first when there is none (one held boot, a few seconds of state written, then the
// restore). The lab it returns has a verified root shell (Login returns it) and the
// guest's default target starting. say receives a line about which way it went.
// When cfg cannot start warm (WarmEligible), or a saved state does not load, it is an
// ordinary Start: the caller logs in as always.
func StartWarm(ctx context.Context, conf config.Config, say func(string), opts ...Option) (*Lab, error) {
	cfg := options(conf, opts)
	dir := WarmStateDir(conf.Cache)
	if say == nil {
		say = func(string) {}
	}
	if err := WarmEligible(cfg); err != nil {
		say("cold boot: " + err.Error())
		return start(ctx, cfg)
	}
	// The state is the base image's when cfg's image is a variant of it.
	base := cfg
	if v := cfg.Variant; v != nil {
		base.VM.Image = v.Base
		if err := WarmEligible(base); err != nil {
			say("cold boot: the variant's base image: " + err.Error())
			return start(ctx, cfg)
		}
		say(fmt.Sprintf("warm start of a variant: the base image's state, with %d file(s) of the variant written before the release", len(v.Files)))
	}
	key, inputs, err := warmKey(ctx, base)
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, key+".state")
	side := state + ".json"
	var ws warmState
	b, rerr := os.ReadFile(side)
	if rerr == nil && json.Unmarshal(b, &ws) == nil && fileExists(state) {
		say(fmt.Sprintf("warm start: restoring the state saved %s (%s)", ws.Saved.Format(time.RFC3339), state))
		cacheprune.Touch(state) // the recent-use mark bootlab cache prune keeps by
	} else {
		say("warm start: no saved state for this image and machine yet; booting once, held at getty.target, to save one")
		if ws, err = saveWarm(ctx, base, state, key, inputs); err != nil {
			return nil, fmt.Errorf("saving the warm state: %w", err)
		}
		say(fmt.Sprintf("warm start: saved %d MiB of guest state; restoring it", ws.Bytes>>20))
	}
	l, err := restoreWarm(ctx, base, state, ws.Accel)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		var ve variantError
		if errors.As(err, &ve) {
			// The state is good; this variant cannot be made from it.
			say("warm start: " + err.Error() + "; cold boot of the variant's own image")
			return start(ctx, cfg)
		}
		// QEMU would not load it (a state from another build of the same version, a
		// truncated file) or the guest in it did not answer: drop it so the next run
		// saves a fresh one, and boot cold (the failed restore keeps its run directory).
		_ = os.Remove(state)
		_ = os.Remove(side)
		say("warm start: the saved state did not load (" + err.Error() + "); cold boot")
		return start(ctx, cfg)
	}
	return l, err
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Size() > 0
}

// held is cfg with the hold on the kernel command line.
func held(cfg Options) Options {
	cfg.VM.Image = Held(cfg.VM.Image)
	return cfg
}

// Held is img with the hold (HoldAppend) on its kernel command line: booted so, it
// stops where a warm start's guest is saved and released.
func Held(img vm.Image) vm.Image {
	img.Append = strings.TrimSpace(img.Append + " " + HoldAppend)
	return img
}

// saveWarm boots cfg held at getty.target, logs in and saves the guest's state to
// state (written under a temporary name, renamed when whole).
func saveWarm(ctx context.Context, cfg Options, state, key string, inputs []string) (warmState, error) {
	ws := warmState{Key: key, Inputs: inputs}
	if err := privateDir(filepath.Dir(state)); err != nil {
		return ws, fmt.Errorf("creating the state directory: %w", err)
	}
	dcfg := held(cfg)
	// No disks: the saved guest must not have seen any (restoreWarm hot-plugs the run's
	// own), and the machine has what hot-plugging needs (HotplugDisks).
	dcfg.VM.Disks, dcfg.VM.HotplugDisks = nil, true
	dcfg.Slug = cfg.Slug + "-warm-state"
	dcfg.Captures = CapturesNone
	d, err := start(ctx, dcfg)
	if err != nil {
		if d != nil {
			_ = d.Close(context.WithoutCancel(ctx), err)
		}
		return ws, err
	}
	ws.FromRun, ws.Accel = d.Dir(), d.Metadata().Accel.Name
	// Two runs of one image may save at the same time (two demos): each writes its own
	// file and the last rename wins, both whole.
	tmp := fmt.Sprintf("%s.tmp-%d-%d", state, os.Getpid(), time.Now().UnixNano())
	if _, err = d.Login(ctx); err == nil {
		err = prewarm(ctx, d, cfg.VM.Image.Profile.PreNixosUnit)
	}
	if err == nil {
		err = d.SaveState(ctx, tmp)
	}
	if err != nil {
		_ = d.Close(context.WithoutCancel(ctx), err)
	} else {
		_ = d.CloseSaved(ctx, "the guest was held at getty.target and saved as a warm state")
	}
	if err != nil {
		_ = os.Remove(tmp)
		return ws, err
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return ws, err
	}
	ws.Bytes, ws.Saved = fi.Size(), time.Now().UTC()
	b, _ := json.MarshalIndent(ws, "", "  ")
	if err := os.WriteFile(tmp+".json", append(b, '\n'), 0o644); err != nil {
		_ = os.Remove(tmp)
		return ws, fmt.Errorf("writing the state's sidecar: %w", err)
	}
	if err := os.Rename(tmp, state); err != nil {
		return ws, err
	}
	return ws, os.Rename(tmp+".json", state+".json")
}

// prewarm starts, in the held guest, what multi-user.target wants besides the
// provisioner (logind, cron, e2scrub_reap, ...) and waits until systemd has no job left:
// paid once in the saved guest instead of in every restored run, where those units
// would compete with pre-nixos for the one vCPU (e2scrub_reap alone runs lvs for ~30 s
// under TCG). Their order relative to pre-nixos is the image's own: the fixture's and
// NixOS's pre-nixos units are ordered after them, not before. The provisioner must
// still be inactive afterwards, or the state would be useless (and is not saved).
func prewarm(ctx context.Context, d *Lab, unit string) error {
	cmd := fmt.Sprintf(`u=$(systemctl show -p Wants --value multi-user.target | tr ' ' '\n' | grep -v -x -e '' -e %[1]s); `+
		`[ -z "$u" ] || systemctl start --no-block $u; `+
		`for i in $(seq 600); do [ -z "$(systemctl list-jobs --no-legend)" ] && break; sleep 0.5; done; `+
		`systemctl list-jobs --no-legend; systemctl is-active %[1]s`, unit)
	out, _, err := d.Status(ctx, cmd)
	if err != nil {
		return fmt.Errorf("starting the held guest's other units: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	st, jobs := lines[len(lines)-1], lines[:len(lines)-1]
	switch {
	case st != "inactive":
		return fmt.Errorf("after starting multi-user.target's other units, %s is %q, not inactive: the boot was not held before it, not a state to save", unit, st)
	case len(jobs) > 0:
		return fmt.Errorf("systemd still has jobs after 5 minutes (%s): not a settled state to save", strings.Join(jobs, "; "))
	}
	return nil
}

// restoreWarm starts cfg's VM from state, takes over the root shell the saved guest
// had, hot-plugs cfg's disks, writes a variant's files and starts the guest's default
// target. On any failure the restored run is closed with it and no lab is returned: the
// state is not to be trusted (unless the error is a variantError).
func restoreWarm(ctx context.Context, cfg Options, state, accel string) (*Lab, error) {
	rcfg := held(cfg)
	rcfg.VM.RestoreFrom, rcfg.VM.HotplugDisks = state, true
	if accel != "" {
		rcfg.VM.Accel = accel // the saved guest's; a probe would boot another kernel first
	}
	l, err := start(ctx, rcfg)
	if err != nil {
		if l != nil {
			_ = l.Close(context.WithoutCancel(ctx), err)
		}
		return nil, err
	}
	fail := func(err error) (*Lab, error) {
		_ = l.Close(context.WithoutCancel(ctx), err)
		return nil, err
	}
	step := l.LoginTimeout()
	if step > time.Minute {
		step = time.Minute
	}
	if _, err := l.ResumeShell(ctx, step); err != nil {
		return fail(err)
	}
	// The point of the hold: the provisioner has not run in the saved guest, so what it
	// does to the disks happens now, to this run's disks. A state taken later would
	// carry another run's storage-status and LVM in its memory over blank disks.
	unit := cfg.VM.Image.Profile.PreNixosUnit
	if out, _, err := l.Status(ctx, "systemctl is-active "+unit); err != nil {
		return fail(err)
	} else if st := strings.TrimSpace(out); st != "inactive" {
		return fail(fmt.Errorf("the saved guest was not held before %s (it is %q): the state is not reusable", unit, st))
	}
	// This run's disks, attached now and settled in the guest's udev before anything
	// that reads disks starts: pre-nixos meets them as it meets a boot's disks.
	if _, err := l.vm.AttachDisks(ctx); err != nil {
		return fail(fmt.Errorf("attaching the run's disks to the restored guest: %w", err))
	}
	if v := cfg.Variant; v != nil {
		if err := l.writeVariant(ctx, v); err != nil {
			return fail(err)
		}
	}
	if f := cfg.BeforeRelease; f != nil {
		if err := f(ctx, l); err != nil {
			return fail(fmt.Errorf("before the release: %w", err))
		}
	}
	if _, err := l.Run(ctx, "systemctl start --no-block default.target"); err != nil {
		return fail(fmt.Errorf("releasing the held boot (systemctl start default.target): %w", err))
	}
	l.vm.Mark("released")
	l.adopted = true
	return l, nil
}

// variantError is a variant that cannot be made from a good state.
type variantError struct{ error }

func (e variantError) Unwrap() error { return e.error }

// unitOf is the unit a file under /etc/systemd/system configures ("" for other files):
// the unit file itself or a drop-in in its .d directory.
func unitOf(path string) string {
	rest, ok := strings.CutPrefix(filepath.Clean(path), "/etc/systemd/system/")
	if !ok {
		return ""
	}
	if dir, _, ok := strings.Cut(rest, "/"); ok {
		return strings.TrimSuffix(dir, ".d")
	}
	return rest
}

// writeVariant writes a variant's files into the restored guest, refusing (as a
// variantError) a file for a unit that has already started there: changing it now
// would not make the guest the variant's.
func (l *Lab) writeVariant(ctx context.Context, v *Variant) error {
	paths := slices.Sorted(maps.Keys(v.Files))
	reload := false
	for _, p := range paths {
		u := unitOf(p)
		if u == "" {
			continue
		}
		reload = true
		out, _, err := l.Status(ctx, "systemctl show -p InactiveExitTimestampMonotonic --value "+frame.Quote(u))
		if err != nil {
			return fmt.Errorf("asking systemd about %s: %w", u, err)
		}
		if ts := strings.TrimSpace(out); ts != "" && ts != "0" {
			return variantError{fmt.Errorf("the variant changes %s, which the saved guest has already started", u)}
		}
	}
	for _, p := range paths {
		if err := l.writeFile(ctx, p, v.Files[p]); err != nil {
			return fmt.Errorf("writing the variant's %s: %w", p, err)
		}
	}
	if reload {
		if _, err := l.Succeed(ctx, "systemctl daemon-reload"); err != nil {
			return fmt.Errorf("reloading the units after writing the variant's files: %w", err)
		}
	}
	l.vm.Mark("variant_written")
	return nil
}

// writeFile writes f at path in the guest with f's mode (0644 when it has none). Text
// travels as one framed command (the file is a few lines: a drop-in, a key); a file with
// a NUL byte, which no shell word can hold, goes by Upload.
func (l *Lab) writeFile(ctx context.Context, path string, f images.File) error {
	mode := f.Mode.Perm()
	if mode == 0 {
		mode = 0o644
	}
	q := frame.Quote(path)
	if strings.ContainsRune(f.Content, 0) {
		if _, err := l.Succeed(ctx, "mkdir -p "+frame.Quote(filepath.Dir(path))); err != nil {
			return err
		}
		if _, err := l.Upload(ctx, []byte(f.Content), path); err != nil {
			return err
		}
		_, err := l.Succeed(ctx, fmt.Sprintf("chmod %o %s", mode, q))
		return err
	}
	_, err := l.Succeed(ctx, fmt.Sprintf("mkdir -p %s && printf '%%s' %s > %s && chmod %o %s",
		frame.Quote(filepath.Dir(path)), frame.Quote(f.Content), q, mode, q))
	return err
}

// CloseSaved closes a run whose guest SaveState has written: that guest is paused for
// good and no poweroff can reach it, so the stop goes straight to QEMU, and the run is
// recorded as interrupted (why says what the state was for), not as a verdict.
func (l *Lab) CloseSaved(ctx context.Context, why string) error {
	stopped, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cancel()
	return l.Close(stopped, fmt.Errorf("%s: %w", why, context.Canceled))
}

// ResumeShell takes over the root shell a VM started from a saved state had: once QEMU
// has read the state, a carriage return makes the shell print a fresh prompt, and the
// shell is verified as root again with the image's profile (AdoptShell), the frame
// channel reconnected unless the VM has none. step bounds each step of that dialogue.
func (l *Lab) ResumeShell(ctx context.Context, step time.Duration) (*shell.Shell, error) {
	if err := l.WaitRunning(ctx); err != nil {
		return nil, err
	}
	from, err := l.Type(ctx, "\r")
	if err != nil {
		return nil, fmt.Errorf("waking the restored guest's shell: %w", err)
	}
	sh, err := l.AdoptShell(ctx, l.cfg.VM.Image.Profile, AdoptOptions{From: from, Step: step, Channel: !l.cfg.VM.NoChannel})
	if err != nil {
		return nil, fmt.Errorf("taking over the restored guest's root shell: %w", err)
	}
	return sh, nil
}

// WaitRunning waits until a VM started from a saved state has read it and the guest
// runs again.
func (l *Lab) WaitRunning(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		st, err := l.RunState(ctx)
		if err == nil && st == "running" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the restored guest is not running (QEMU state %q, %v): %w", st, err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// privateDir makes dir, and makes it 0700 if it exists already: a saved guest is its
// memory (the root shell, whatever the image keeps in RAM), readable by nobody else.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// WarmStateDir is where warm states live under an image cache root.
func WarmStateDir(cache string) string { return filepath.Join(cache, "warm-states") }
