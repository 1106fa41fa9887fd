package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/progress"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/verify"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// runFlags are shared by run and demo.
type runFlags struct {
	// cfg is the configuration built in Main; --notes, --accel, --timeout-scale and
	// --qemu write into it.
	cfg                                             *config.Config
	image, iso, kernel, initrd, appendLine, profile string
	slug, pauseAfter, inject                        string
	boot, entry, expectScreen                       string
	captures                                        string
	disks                                           listFlag
	cmds                                            listFlag
	ssh, debug, verifyPreNixos, warm, asJSON        bool
	debugWait                                       time.Duration
	memory                                          int
}

func (f *runFlags) register(fs *flag.FlagSet) {
	f.cfg.AddFlags(fs)
	fs.StringVar(&f.image, "image", "", "a bootlab image: mini or fixture (default: fixture)")
	fs.StringVar(&f.iso, "iso", "", "boot this ISO")
	fs.StringVar(&f.kernel, "kernel", "", "boot this kernel (with --initrd, --append)")
	fs.StringVar(&f.initrd, "initrd", "", "initrd for --kernel")
	fs.StringVar(&f.appendLine, "append", "console=ttyS0,115200n8", "kernel command line for --kernel")
	fs.StringVar(&f.boot, "boot", lab.BootAuto, "for an ISO: direct (QEMU loads the menu entry's kernel with console=ttyS0 added, the ISO attached), firmware (the ISO's own bootloader), or auto (firmware when the entry already has a serial console and is the default, direct otherwise)")
	fs.StringVar(&f.entry, "entry", "", "for an ISO: the boot menu entry, by label, title or regular expression (default: the menu's default; bootlab inspect --menu ISO lists them)")
	fs.StringVar(&f.expectScreen, "expect-screen", "", "pass when this text is on the console's screen instead of logging in (installers, rescue images)")
	fs.StringVar(&f.profile, "profile", "", "console profile: mini, fixture, nixos (default from the image)")
	fs.StringVar(&f.slug, "slug", "", "name for the run directory (default from the image)")
	fs.Var(&f.disks, "disk", "add a blank virtio disk of this size in MiB (repeatable)")
	fs.Var(&f.cmds, "cmd", "run this framed command as root and print its output and status (repeatable)")
	fs.BoolVar(&f.ssh, "ssh", false, "forward the guest's port 22 to a loopback port")
	fs.StringVar(&f.inject, "inject", "", "pre-nixos: upload the checkout's static pre-nixos over the frame channel and run it --plan-only (plan and logs in <run>/inject)")
	fs.BoolVar(&f.verifyPreNixos, "verify", true, "on images that run pre-nixos, verify storage, LAN and SSH")
	fs.BoolVar(&f.debug, "debug", false, "on failure keep the VM running, take the captures, and serve its console for bootlab attach")
	fs.StringVar(&f.pauseAfter, "pause-after", "", "pause at login, network or storage for attaching (implies --debug)")
	fs.DurationVar(&f.debugWait, "debug-wait", 10*time.Minute, "without a terminal, how long a paused VM waits before teardown")
	fs.IntVar(&f.memory, "memory", 0, "guest memory in MiB (default 1024, mini 256)")
	fs.BoolVar(&f.asJSON, "json", false, "print the outcome as one JSON object on stdout (runJSON in run.go, docs/running.md); what is printed for people goes to stderr")
	fs.StringVar(&f.captures, "captures", "always", "when to take the boot evidence (journal, units, network, disks): always, failure (only when the run fails) or none")
}

// launcher starts QEMU (nil: the real one); tests substitute a replay guest
// (harness/replay) to drive the whole command against recorded consoles.
var launcher lab.Launcher

// resolvedImage is what was chosen to boot.
type resolvedImage struct {
	img        lab.Image
	keyFP      string
	prenixos   bool
	kernelHint string // a kernel for the accel probe
	slug       string
}

func resolveImage(ctx context.Context, f *runFlags, stderr io.Writer) (resolvedImage, error) {
	var r resolvedImage
	switch {
	case f.iso != "" && f.kernel != "":
		return r, usagef("give --iso or --kernel, not both")
	case (f.boot != lab.BootAuto || f.entry != "") && (f.kernel != "" || f.image == "mini"):
		return r, usagef("--boot and --entry are for ISOs (--iso, --image fixture)")
	case f.iso != "":
		r.img = lab.Image{Name: "iso", ISO: f.iso, Profile: lab.ProfileNixOS}
		r.slug = "iso"
	case f.kernel != "":
		r.img = lab.Image{Name: "kernel", Kernel: f.kernel, Initrd: f.initrd, Append: f.appendLine, Profile: lab.ProfileMini, Poweroff: "poweroff -f"}
		r.kernelHint, r.slug = f.kernel, "kernel"
	case f.image == "mini":
		fmt.Fprintln(stderr, "bootlab: building (or reusing) the mini image")
		img, m, err := lab.MiniImage(ctx, images.Cache(f.cfg.Cache), images.MiniSpec{})
		if err != nil {
			return r, err
		}
		r.img, r.kernelHint, r.slug = img, m.Kernel, "mini"
	case f.image == "" || f.image == "fixture":
		fmt.Fprintln(stderr, "bootlab: building (or reusing) the fixture ISO; a cold build takes a few minutes")
		img, iso, key, err := lab.FixtureImage(ctx, images.Cache(f.cfg.Cache), images.FixtureSpec{})
		if err != nil {
			return r, err
		}
		r.img, r.kernelHint, r.keyFP, r.prenixos, r.slug = img, iso.Kernel, key.Fingerprint, true, "fixture"
	default:
		return r, usagef("unknown --image %q (mini or fixture)", f.image)
	}
	if r.img.ISO != "" {
		b, err := lab.ResolveISOBoot(ctx, images.Cache(f.cfg.Cache), &r.img, f.boot, f.entry)
		if err != nil {
			// A wrong --boot/--entry, or an unreadable image: exit 2 before any boot.
			return r, usageError{err}
		}
		if b.Path == lab.BootDirect {
			r.kernelHint = r.img.Kernel
			fmt.Fprintf(stderr, "bootlab: booting entry %q directly (%s): %s\n", b.Entry.Label, b.Why, r.img.Append)
		} else {
			fmt.Fprintf(stderr, "bootlab: booting the ISO through the firmware (%s)\n", b.Why)
		}
	}
	if f.profile != "" {
		p, err := lab.ProfileByName(f.profile)
		if err != nil {
			return r, usageError{err}
		}
		r.img.Profile = p
		// An ISO named with a profile that runs pre-nixos (`--iso result/iso/X.iso
		// --profile nixos`) is verified like the fixture; a bare --iso is any NixOS
		// ISO, upstream installers included, which have no pre-nixos to verify.
		if f.iso != "" && p.PreNixosUnit != "" {
			r.prenixos = true
		}
	}
	if f.slug != "" {
		r.slug = f.slug
	}
	return r, nil
}

func (f *runFlags) spec(r resolvedImage) (lab.Spec, error) {
	// Accelerator, QEMU binary, timeouts and the probe's cache come from f.cfg in
	// lab.Start.
	s := lab.Spec{Image: r.img, ProbeKernel: r.kernelHint,
		SSH: f.ssh || r.prenixos, Net: r.prenixos, MemoryMB: f.memory, Launcher: launcher}
	if s.MemoryMB == 0 && r.img.Profile.Name == "mini" {
		s.MemoryMB = 256
	}
	for i, d := range f.disks {
		mb, err := strconv.Atoi(d)
		if err != nil || mb <= 0 {
			return s, usagef("--disk %q: want a size in MiB", d)
		}
		s.Disks = append(s.Disks, lab.Disk{Name: fmt.Sprintf("disk%d.img", i), SizeMB: mb})
	}
	if r.prenixos && len(s.Disks) == 0 {
		s.Disks = []lab.Disk{{Name: "disk0.img", SizeMB: 4096}}
	}
	return s, nil
}

// parseRunFlags parses the flags run and demo share.
func parseRunFlags(name string, cfg *config.Config, args []string, stderr io.Writer) (*runFlags, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := runFlags{cfg: cfg}
	f.register(fs)
	// The demo shows the end-to-end check, so it starts warm by default: the first demo
	// boots once and saves the guest held before pre-nixos, every later one resumes
	// there in seconds. bootlab run boots cold unless asked: its subject may be the boot.
	fs.BoolVar(&f.warm, "warm", name == "bootlab demo", "resume the guest from a state saved before pre-nixos started (booted once, held at getty.target, and saved the first time; kept in the image cache), then start the default target: pre-nixos, the LAN and sshd run as in a boot; fixture and directly booted NixOS images only, others boot cold")
	if err := parseFlags(fs, args, stderr); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected arguments: %s", joinArgs(fs.Args()))
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

func cmdRun(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	f, err := parseRunFlags("bootlab run", cfg, args, stderr)
	if err != nil {
		return err
	}
	return runImage(ctx, f, stdout, stderr)
}

func runImage(ctx context.Context, f *runFlags, stdout, stderr io.Writer) error {
	// Long work (image builds, downloads, waits) shows as it goes: a live line on a
	// terminal, plain lines otherwise. Other output goes through it so the two never
	// share a line.
	pl := progress.For(stderr)
	images.SetProgress(pl)
	defer images.SetProgress(nil)
	stderr = pl
	ctx = progress.WithLine(ctx, pl) // each wait in the guest shows its elapsed time
	captures, err := lab.ParseCaptureMode(f.captures)
	if err != nil {
		return usageError{err}
	}
	r, err := resolveImage(ctx, f, stderr)
	if errors.Is(err, images.ErrMissingTool) {
		return usageError{err} // the host lacks a tool to build the image: exit 2
	}
	if err != nil {
		return err
	}
	spec, err := f.spec(r)
	if err != nil {
		return err
	}
	out := &runJSON{}
	human := stdout // what people read; stderr when stdout carries the JSON
	if f.asJSON {
		human = stderr
	}
	opts := []lab.Option{lab.Slug(r.slug), lab.Machine(spec), lab.RootKeyFingerprint(r.keyFP), lab.Progress(stderr), lab.Captures(captures)}
	var l *lab.Lab
	if f.warm && f.expectScreen == "" {
		l, err = lab.StartWarm(ctx, *f.cfg, func(s string) { fmt.Fprintln(stderr, "bootlab: "+s) }, opts...)
	} else {
		l, err = lab.Start(ctx, *f.cfg, opts...)
	}
	if err != nil {
		var ranVM *lab.StartError
		if f.asJSON && errors.As(err, &ranVM) {
			if m, merr := runrec.ReadMetadata(ranVM.Dir); merr == nil {
				out.fill(ranVM.Dir, m)
				_ = writeJSON(stdout, out)
			}
		}
		if lab.HostError(err) || (!errors.As(err, &ranVM) && !f.warm) {
			// QEMU could not run at all (a locked disk image, a taken port): the host's
			// problem, reported in QEMU's own words, not a verdict on the image.
			return usageError{err}
		}
		return err
	}
	fmt.Fprintf(stderr, "bootlab: run directory %s\n", l.Dir())
	verdict := drive(ctx, l, f, r, human, stderr, out)
	if verdict != nil && f.debug && ctx.Err() == nil && l.Running() {
		fmt.Fprintf(stderr, "bootlab: FAILED: %v\n", verdict)
		debugPause(ctx, l, f, stderr, "failure")
	}
	cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if ctx.Err() != nil {
		cctx, cancel = context.WithCancel(context.Background())
		cancel() // interrupted: skip the polite shutdown stages
	}
	cerr := l.Close(cctx, verdict)
	m := l.Metadata()
	if f.asJSON {
		out.fill(l.Dir(), m)
		if err := writeJSON(stdout, out); err != nil {
			return errors.Join(verdict, err)
		}
	} else {
		fmt.Fprintf(stdout, "\nverdict: %s\nrun directory: %s\nreport: %s\n", m.Outcome, l.Dir(), l.Path(runrec.ReportFile))
		for _, ms := range m.Milestones {
			fmt.Fprintf(stdout, "  %-16s %7.1fs\n", ms.Name, ms.At.D().Seconds())
		}
	}
	if verdict != nil {
		return verdict
	}
	return cerr
}

// drive logs in and runs the checks; its error is the run's verdict.
func drive(ctx context.Context, l *lab.Lab, f *runFlags, r resolvedImage, stdout, stderr io.Writer, res *runJSON) error {
	if f.expectScreen != "" {
		return expectScreen(ctx, l, f.expectScreen, stdout)
	}
	stop := wait(stderr, "waiting for the login prompt and a root shell")
	_, err := l.Login(ctx)
	stop()
	if err != nil {
		return err
	}
	if f.pauseAfter == "login" {
		debugPause(ctx, l, f, stderr, "pause after login")
	}
	for _, c := range f.cmds {
		began := time.Now()
		out, status, err := l.Status(ctx, c)
		if err != nil {
			return err
		}
		took := time.Since(began)
		res.Commands = append(res.Commands, commandJSON{Command: c, Output: out, ExitStatus: status, Seconds: took.Seconds()})
		fmt.Fprintf(stdout, "$ %s\n%s[exit %d, %s]\n", c, ensureNL([]byte(out)), status, took.Round(time.Millisecond))
	}
	if f.inject != "" {
		if err := injectPreNixos(ctx, images.Cache(f.cfg.Cache), l, stdout); err != nil {
			return err
		}
	}
	if r.prenixos && f.verifyPreNixos {
		key, err := images.Cache(f.cfg.Cache).RootKey()
		if err != nil {
			return err
		}
		// Each wait (storage, unit, address, SSH) shows its own elapsed time on the
		// progress line the context carries, and a line with its duration when it ends.
		fmt.Fprintln(stderr, "bootlab: verifying pre-nixos: storage, then network, then SSH")
		checks := verify.PreNixos{Lab: l, Key: key, Out: stdout,
			Pause: func(stage string) {
				if f.pauseAfter == stage {
					debugPause(ctx, l, f, stderr, "pause after "+stage)
				}
			}}
		err = checks.Run(ctx)
		if err != nil {
			return err
		}
	}
	return nil
}

// wait shows a wait's elapsed time every second while it lasts (stderr is the run's
// progress line; anything else shows nothing).
func wait(stderr io.Writer, what string) (stop func()) {
	pl, ok := stderr.(*progress.Line)
	if !ok {
		return func() {}
	}
	return pl.Ticker(what, func(e time.Duration) string { return fmt.Sprintf("bootlab: %s (%s)", what, progress.Elapsed(e)) })
}

// expectScreen waits, for as long as a login may take, until text is on the 80x24
// screen the console draws (full-screen programs like the Debian installer repaint
// with escape sequences, so the byte stream alone does not show what a person sees).
func expectScreen(ctx context.Context, l *lab.Lab, text string, stdout io.Writer) error {
	// The screen model answers the terminal queries a full-screen program sends (GNU
	// screen in the Debian installer waits for them), as a real terminal would.
	scr, remove := l.WatchScreen(80, 24)
	defer remove()
	gctx, silent, stop := l.GuardSilence(ctx)
	defer stop()
	wctx, cancel := context.WithTimeout(gctx, l.LoginTimeout())
	defer cancel()
	go func() {
		select {
		case <-l.Exited():
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := scr.WaitForText(wctx, text); err != nil {
		err = silent(fmt.Errorf("waiting for %q on the console screen: %w", text, err))
		l.Diagnose("expect-screen", fmt.Sprintf("waiting for %q on the screen", text), err, "screen:\n"+scr.Text())
		return err
	}
	fmt.Fprintf(stdout, "screen shows %q:\n%s\n", text, strings.TrimRight(scr.Text(), " \n"))
	return nil
}

func ensureNL(b []byte) string {
	s := string(b)
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// debugPause keeps the VM up for a person (lab.KeepForDebug, shared with the scenarios):
// captures, the console on a socket, fresh captures on request; it waits for Enter on
// a terminal, or for --debug-wait without one (CI). With stdin redirected the terminal
// is still found (/dev/tty, as the scenarios find it), and the message is printed there
// too when stderr is not a terminal.
func debugPause(ctx context.Context, l *lab.Lab, f *runFlags, stderr io.Writer, why string) {
	o := lab.PauseOptions{Why: why, Out: stderr, Wait: f.debugWait}
	if isTerminal(os.Stdin) {
		o.Enter = os.Stdin
	} else if tty := pauseTerminal(); tty != nil {
		defer tty.Close()
		o.Enter = tty
		if !isTerminal(os.Stderr) {
			o.Out = io.MultiWriter(stderr, tty)
		}
	}
	l.KeepForDebug(ctx, o)
}

// pauseTerminal finds the controlling terminal for a pause. Only the bootlab command
// looks (main sets it): tests that call Main in-process must not wait for an Enter from
// whoever started go test.
var pauseTerminal = func() *os.File { return nil }

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
	return err == nil
}

// cmdDemo is run with a few framed commands whose output and status are printed.
func cmdDemo(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	f, err := parseRunFlags("bootlab demo", cfg, args, stderr)
	if err != nil {
		return err
	}
	if len(f.cmds) == 0 {
		f.cmds = []string{"id -u", "uname -r", "cat /proc/cmdline", "ls /nonexistent"}
	}
	return runImage(ctx, f, stdout, stderr)
}

// runJSON is what `bootlab run --json` prints on stdout, one object, whatever the
// verdict (a run that could not start prints nothing there: its error is on stderr,
// exit 2). Its fields are stable; docs/running.md lists them.
type runJSON struct {
	// Verdict is the run's outcome: pass, fail, error (the environment failed, not the
	// image) or interrupted.
	Verdict runrec.Outcome `json:"verdict"`
	// Error is why the run did not pass ("" when it did).
	Error string `json:"error,omitempty"`
	// RunDir is the run directory; Report its report.html.
	RunDir string `json:"run_directory"`
	Report string `json:"report"`
	// Milestones are the boot's milestones in order, in seconds since QEMU spawned.
	Milestones []milestoneJSON `json:"milestones"`
	// Commands are the --cmd commands run, in order.
	Commands []commandJSON `json:"commands,omitempty"`
}

type milestoneJSON struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

type commandJSON struct {
	Command    string  `json:"command"`
	Output     string  `json:"output"`
	ExitStatus int     `json:"exit_status"`
	Seconds    float64 `json:"seconds"`
}

// fill sets what the run record says.
func (j *runJSON) fill(dir string, m runrec.Metadata) {
	j.Verdict, j.Error, j.RunDir, j.Report = m.Outcome, m.Error, dir, filepath.Join(dir, runrec.ReportFile)
	j.Milestones = []milestoneJSON{}
	for _, ms := range m.Milestones {
		j.Milestones = append(j.Milestones, milestoneJSON{Name: ms.Name, Seconds: ms.At.D().Seconds()})
	}
}
