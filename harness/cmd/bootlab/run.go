package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/capture"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/verify"
	"github.com/bootlab/bootlab/harness/vm"
	"golang.org/x/sys/unix"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// runFlags are shared by run and demo.
type runFlags struct {
	image, iso, kernel, initrd, appendLine, profile string
	notes, slug, accel, pauseAfter                  string
	captures                                        string
	disks                                           listFlag
	cmds                                            listFlag
	ssh, debug, verifyPreNixos                      bool
	scale                                           float64
	debugWait                                       time.Duration
	memory                                          int
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.image, "image", "", "a bootlab image: mini or fixture (default: fixture)")
	fs.StringVar(&f.iso, "iso", "", "boot this ISO")
	fs.StringVar(&f.kernel, "kernel", "", "boot this kernel (with --initrd, --append)")
	fs.StringVar(&f.initrd, "initrd", "", "initrd for --kernel")
	fs.StringVar(&f.appendLine, "append", "console=ttyS0,115200n8", "kernel command line for --kernel")
	fs.StringVar(&f.profile, "profile", "", "console profile: mini, fixture, nixos (default from the image)")
	fs.StringVar(&f.notes, "notes", "", "run directories go here (default $BOOTLAB_NOTES or docs/work-notes)")
	fs.StringVar(&f.slug, "slug", "", "name for the run directory (default from the image)")
	fs.StringVar(&f.accel, "accel", "", "kvm or tcg (default: probe KVM with a real boot, TCG if it hangs)")
	fs.Var(&f.disks, "disk", "add a blank virtio disk of this size in MiB (repeatable)")
	fs.Var(&f.cmds, "cmd", "run this framed command as root and print its output and status (repeatable)")
	fs.BoolVar(&f.ssh, "ssh", false, "forward the guest's port 22 to a loopback port")
	fs.BoolVar(&f.verifyPreNixos, "verify", true, "on images that run pre-nixos, verify storage, LAN and SSH")
	fs.BoolVar(&f.debug, "debug", false, "on failure keep the VM running, capture, and offer `bootlab attach`")
	fs.StringVar(&f.pauseAfter, "pause-after", "", "pause at login, network or storage for attaching (implies --debug)")
	fs.DurationVar(&f.debugWait, "debug-wait", 10*time.Minute, "without a terminal, how long a paused VM waits before teardown")
	fs.Float64Var(&f.scale, "timeout-scale", 0, "multiply every timeout (default $BOOTLAB_TIMEOUT_SCALE or 1)")
	fs.IntVar(&f.memory, "memory", 0, "guest memory in MiB (default 1024, mini 256)")
	fs.StringVar(&f.captures, "captures", "always", "take the boot evidence (journal, units, network, disks) always, on failure, or none")
}

// resolvedImage is what was chosen to boot.
type resolvedImage struct {
	img        vm.Image
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
	case f.iso != "":
		r.img = vm.Image{Name: "iso", ISO: f.iso, Profile: shell.NixOSInstaller, Poweroff: "systemctl poweroff"}
		r.slug = "iso"
	case f.kernel != "":
		r.img = vm.Image{Name: "kernel", Kernel: f.kernel, Initrd: f.initrd, Append: f.appendLine, Profile: shell.Mini, Poweroff: "poweroff -f"}
		r.kernelHint, r.slug = f.kernel, "kernel"
	case f.image == "mini":
		fmt.Fprintln(stderr, "bootlab: building (or reusing) the mini image")
		img, m, err := lab.MiniImage(ctx, images.MiniSpec{})
		if err != nil {
			return r, err
		}
		r.img, r.kernelHint, r.slug = img, m.Kernel, "mini"
	case f.image == "" || f.image == "fixture":
		fmt.Fprintln(stderr, "bootlab: building (or reusing) the fixture ISO; a cold build takes a few minutes")
		img, iso, key, err := lab.FixtureImage(ctx, images.FixtureSpec{})
		if err != nil {
			return r, err
		}
		r.img, r.kernelHint, r.keyFP, r.prenixos, r.slug = img, iso.Kernel, key.Fingerprint, true, "fixture"
	default:
		return r, usagef("unknown --image %q (mini or fixture)", f.image)
	}
	if f.profile != "" {
		p, err := shell.ByName(f.profile)
		if err != nil {
			return r, usageError{err}
		}
		r.img.Profile = p
	}
	if f.slug != "" {
		r.slug = f.slug
	}
	return r, nil
}

func (f *runFlags) spec(r resolvedImage) (vm.Spec, error) {
	if f.scale > 0 {
		os.Setenv("BOOTLAB_TIMEOUT_SCALE", strconv.FormatFloat(f.scale, 'f', -1, 64))
	}
	s := vm.Spec{Image: r.img, Accel: f.accel, ProbeKernel: r.kernelHint, ProbeCache: lab.ProbeCache(),
		SSH: f.ssh || r.prenixos, Net: r.prenixos, MemoryMB: f.memory, Binary: os.Getenv("BOOTLAB_QEMU"),
		Timeouts: vm.DefaultTimeouts()}
	if f.accel != "" && f.accel != qemu.AccelKVM && f.accel != qemu.AccelTCG {
		return s, usagef("--accel must be kvm or tcg")
	}
	if s.MemoryMB == 0 && r.img.Profile.Name == "mini" {
		s.MemoryMB = 256
	}
	if r.img.Profile.Name == "mini" {
		s.Timeouts.Stop.Powerdown = 0 // busybox init ignores the ACPI power button
	}
	for i, d := range f.disks {
		mb, err := strconv.Atoi(d)
		if err != nil || mb <= 0 {
			return s, usagef("--disk %q: want a size in MiB", d)
		}
		s.Disks = append(s.Disks, vm.DiskSpec{Name: fmt.Sprintf("disk%d.img", i), SizeMB: mb})
	}
	if r.prenixos && len(s.Disks) == 0 {
		s.Disks = []vm.DiskSpec{{Name: "disk0.img", SizeMB: 4096}}
	}
	return s, nil
}

// parseRunFlags parses the flags run and demo share.
func parseRunFlags(name string, args []string, stderr io.Writer) (*runFlags, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var f runFlags
	f.register(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected arguments: %s", joinArgs(fs.Args()))
	}
	return &f, nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseRunFlags("bootlab run", args, stderr)
	if err != nil {
		return err
	}
	return runImage(ctx, f, stdout, stderr)
}

func runImage(ctx context.Context, f *runFlags, stdout, stderr io.Writer) error {
	captures, err := lab.ParseCaptureMode(f.captures)
	if err != nil {
		return usageError{err}
	}
	if f.pauseAfter != "" {
		switch f.pauseAfter {
		case "login", "network", "storage":
		default:
			return usagef("--pause-after must be login, network or storage")
		}
		f.debug = true
	}
	r, err := resolveImage(ctx, f, stderr)
	if err != nil {
		return err
	}
	spec, err := f.spec(r)
	if err != nil {
		return err
	}
	notes := f.notes
	if notes == "" {
		notes = runrec.DefaultNotesRoot()
	}
	l, err := lab.Start(ctx, lab.Config{Slug: r.slug, Notes: notes, VM: spec, RootKeyFingerprint: r.keyFP, Progress: stderr, Captures: captures})
	if l != nil {
		fmt.Fprintf(stderr, "bootlab: run directory %s\n", l.Dir())
	}
	if err != nil {
		if l == nil {
			return usageError{err}
		}
		return err
	}
	verdict := drive(ctx, l, f, r, stdout, stderr)
	if verdict != nil && f.debug && ctx.Err() == nil && l.VM.Running() {
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
	m := l.Rec.Metadata()
	fmt.Fprintf(stdout, "\nverdict: %s\nrun directory: %s\nreport: %s\n", m.Outcome, l.Dir(), l.Rec.Path(runrec.ReportFile))
	for _, ms := range m.Milestones {
		fmt.Fprintf(stdout, "  %-16s %7.1fs\n", ms.Name, ms.At.D().Seconds())
	}
	if verdict != nil {
		return verdict
	}
	return cerr
}

// drive logs in and runs the checks; its error is the run's verdict.
func drive(ctx context.Context, l *lab.Lab, f *runFlags, r resolvedImage, stdout, stderr io.Writer) error {
	sh, err := l.Login(ctx)
	if err != nil {
		return err
	}
	if f.pauseAfter == "login" {
		debugPause(ctx, l, f, stderr, "pause after login")
	}
	for _, c := range f.cmds {
		res, err := l.Run(ctx, c, shell.AllowFail())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "$ %s\n%s[exit %d, %s]\n", c, ensureNL(res.Output), res.ExitStatus, res.Duration.Round(time.Millisecond))
	}
	if r.prenixos && f.verifyPreNixos {
		key, err := lab.RootKey()
		if err != nil {
			return err
		}
		checks := verify.PreNixos{Lab: l, Key: key, Out: stdout,
			Pause: func(stage string) {
				if f.pauseAfter == stage {
					debugPause(ctx, l, f, stderr, "pause after "+stage)
				}
			}}
		if err := checks.Run(ctx); err != nil {
			return err
		}
	}
	_ = sh
	return nil
}

func ensureNL(b []byte) string {
	s := string(b)
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// debugPause keeps the VM up for a person: the console is served on a socket, the
// standard captures are taken, and automation waits for Enter on a terminal, or for
// --debug-wait without one (CI), before it goes on.
func debugPause(ctx context.Context, l *lab.Lab, f *runFlags, stderr io.Writer, why string) {
	standard := func(ctx context.Context) error {
		_, err := l.Capture(ctx, capture.Systemd("pre-nixos.service", "ssh.service", "systemd-networkd.service"), capture.Network("lan"), capture.Storage(), capture.Kernel())
		return err
	}
	// Captures first: they use the shell, which is then handed to the person.
	if l.VM.Shell != nil {
		if err := standard(ctx); err != nil {
			fmt.Fprintf(stderr, "bootlab: captures incomplete: %v\n", err)
		}
		_ = l.VM.Shell.HandOver(ctx)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	sock, err := l.ServeConsole(sctx)
	if err != nil {
		fmt.Fprintf(stderr, "bootlab: cannot serve the console: %v\n", err)
		return
	}
	if l.VM.Shell != nil {
		// `bootlab capture --running DIR` from another terminal: take the shell back for
		// the framed captures, then hand it to the person again.
		_, _ = l.ServeCaptures(sctx, func(ctx context.Context) error {
			if err := l.VM.Shell.TakeBack(ctx); err != nil {
				return err
			}
			defer l.VM.Shell.HandOver(ctx)
			return standard(ctx)
		})
	}
	fmt.Fprintf(stderr, "\nbootlab: %s: the VM is kept running.\n  attach:   bootlab attach %s   (Ctrl-] detaches)\n  console:  %s\n  captures: %s (fresh ones: bootlab capture --running %s)\n",
		why, l.Dir(), sock, l.Rec.Path("captures"), l.Dir())
	if isTerminal(os.Stdin) {
		fmt.Fprintln(stderr, "  press Enter here to continue")
		done := make(chan struct{})
		go func() { _, _ = bufio.NewReader(os.Stdin).ReadString('\n'); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		case <-l.VM.Machine.Exited():
		}
	} else {
		fmt.Fprintf(stderr, "  no terminal on stdin: waiting %s, then tearing down\n", f.debugWait)
		select {
		case <-time.After(f.debugWait):
		case <-ctx.Done():
		case <-l.VM.Machine.Exited():
		}
	}
	if l.VM.Shell != nil && l.VM.Running() {
		if err := l.VM.Shell.TakeBack(ctx); err != nil {
			fmt.Fprintf(stderr, "bootlab: taking the shell back: %v\n", err)
		}
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// cmdDemo is run with a few framed commands whose output and status are printed.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseRunFlags("bootlab demo", args, stderr)
	if err != nil {
		return err
	}
	if len(f.cmds) == 0 {
		f.cmds = []string{"id -u", "uname -r", "cat /proc/cmdline", "ls /nonexistent"}
	}
	return runImage(ctx, f, stdout, stderr)
}
