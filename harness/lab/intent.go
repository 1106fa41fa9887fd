package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bootlab/bootlab/artifacts/progress"
	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/capture"
	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/sshc"
	"github.com/bootlab/bootlab/harness/vm"
)

// What a scenario means, said once. The contract of every method here: it works on the
// VM this lab started, it is bounded by ctx (and by the VM's own command timeout for
// framed commands), it needs the verified root shell Login made unless it says
// otherwise, and a failure comes back as an error naming what was being done, with a
// diagnostic left in the run directory where one explains more than the error. The
// model is the NixOS test driver's Machine (succeed, fail, wait_for_unit, ...); nothing
// outside this package reaches into the VM underneath.

func (l *Lab) shellOrErr() (*shell.Shell, error) {
	if l.vm.Shell() == nil {
		return nil, errors.New("no root shell: Login first")
	}
	return l.vm.Shell(), nil
}

// Succeed runs cmd, which must exit 0, and returns its output.
func (l *Lab) Succeed(ctx context.Context, cmd string, opts ...shell.RunOption) (string, error) {
	r, err := l.Run(ctx, cmd, opts...)
	return string(r.Output), err
}

// Fail runs cmd, which must exit non-zero, and returns its output.
func (l *Lab) Fail(ctx context.Context, cmd string, opts ...shell.RunOption) (string, error) {
	r, err := l.Run(ctx, cmd, append(opts, shell.AllowFail())...)
	if err != nil {
		return string(r.Output), err
	}
	if r.ExitStatus == 0 {
		return string(r.Output), fmt.Errorf("%q exited 0, a failure was expected", cmd)
	}
	return string(r.Output), nil
}

// Status runs cmd and returns its output and exit status, whatever the status is; the
// error is only for a command that could not be run.
func (l *Lab) Status(ctx context.Context, cmd string) (string, int, error) {
	r, err := l.Run(ctx, cmd, shell.AllowFail())
	return string(r.Output), r.ExitStatus, err
}

// explained records a wait that failed with the captures that explain its kind
// (WaitFailed), taken at once while the guest is in the state that failed.
func (l *Lab) explained(ctx context.Context, w capture.Wait, what string, err error) error {
	if err != nil {
		l.WaitFailed(ctx, w, what, err)
	}
	return err
}

// WaitUnit waits until systemd reports unit in one of want (default "active"); a
// failure leaves the unit's captures.
func (l *Lab) WaitUnit(ctx context.Context, unit string, want ...string) (string, error) {
	ctx = l.WithProgress(ctx)
	sh, err := l.shellOrErr()
	if err != nil {
		return "", err
	}
	st, err := sh.WaitUnit(ctx, unit, want...)
	return st, l.explained(ctx, capture.Wait{Kind: capture.WaitUnit, Unit: unit}, "waiting for unit "+unit, err)
}

// WaitFile waits until path exists in the guest; a failure leaves the captures.
func (l *Lab) WaitFile(ctx context.Context, path string) error {
	ctx = l.WithProgress(ctx)
	sh, err := l.shellOrErr()
	if err != nil {
		return err
	}
	return l.explained(ctx, capture.Wait{Kind: capture.WaitFile, Path: path}, "waiting for "+path, sh.WaitFile(ctx, path))
}

// WaitIPv4 waits for an IPv4 address on iface and returns it; a failure leaves the
// network captures.
func (l *Lab) WaitIPv4(ctx context.Context, iface string) (string, error) {
	ctx = l.WithProgress(ctx)
	sh, err := l.shellOrErr()
	if err != nil {
		return "", err
	}
	ip, err := sh.WaitIPv4(ctx, iface)
	return ip, l.explained(ctx, capture.Wait{Kind: capture.WaitIPv4, Iface: iface}, "waiting for an IPv4 address on "+iface, err)
}

// WaitUntil waits until the guest command check exits 0 (3 is a terminal failure) and
// returns its output; what names it in errors. Only the caller knows what the check
// means, so a failure is recorded by the caller (WaitFailed with the right kind).
func (l *Lab) WaitUntil(ctx context.Context, what, check string) (string, error) {
	ctx = l.WithProgress(ctx)
	sh, err := l.shellOrErr()
	if err != nil {
		return "", err
	}
	return sh.WaitUntil(ctx, what, check)
}

// WaitConsole waits until the guest's own console output (never the harness's
// keystrokes or command output) matches re, and returns the match; like WaitUntil, the
// caller records a failure. It needs no shell when the VM has none: the serial stream
// is read from its start.
func (l *Lab) WaitConsole(ctx context.Context, re *regexp.Regexp) (string, error) {
	if l.vm.Shell() != nil {
		return l.vm.Shell().WaitConsole(ctx, 0, re)
	}
	m, err := l.vm.Console().Expect(ctx, 0, console.Pattern{Name: re.String(), Re: re})
	return m.Text, err
}

// SerialLog is everything the guest printed on its serial console so far.
func (l *Lab) SerialLog() ([]byte, error) { return os.ReadFile(l.rec.Path(vm.SerialLog)) }

// SSHAddr is the host side of the VM's SSH port forward ("" without one).
func (l *Lab) SSHAddr() string {
	if l.SSHPort() == 0 {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.SSHPort()))
}

// SSH dials the VM's forwarded SSH port as user with key, the server pinned to hostKey.
func (l *Lab) SSH(ctx context.Context, user string, key ssh.Signer, hostKey ssh.PublicKey) (*sshc.Client, error) {
	addr := l.SSHAddr()
	if addr == "" {
		return nil, errors.New("the VM has no SSH port forward")
	}
	return sshc.Dial(ctx, addr, user, key, hostKey)
}

// PowerOff stops the guest the way its image profile says (the poweroff command as
// root, the ACPI button unless nothing on the guest handles it, then QMP quit), reaps
// QEMU and says which stage stopped it; it is never the quick sync and quit that Close
// uses when nothing is kept. The run stays open: Close still records it.
func (l *Lab) PowerOff(ctx context.Context) (qemu.StopStage, error) {
	// The caller asked for the guest's own shutdown (it is under test, or what the
	// guest wrote must survive): never the quick sync and quit.
	start := time.Now()
	stage, err := l.vm.StopClean(ctx)
	l.recordStop(start)
	if err != nil {
		return stage, fmt.Errorf("powering the VM off (reached stage %s): %w", stage, err)
	}
	return stage, nil
}

// Running reports whether QEMU is still up.
func (l *Lab) Running() bool { return l.vm.Running() }

// Exited is closed when QEMU exits.
func (l *Lab) Exited() <-chan struct{} { return l.vm.Machine().Exited() }

// Pid is QEMU's process id.
func (l *Lab) Pid() int { return l.vm.Machine().Pid() }

// Profile is the image profile the VM was started with: unit names, key paths, login,
// poweroff and ACPI behaviour.
func (l *Lab) Profile() shell.Profile { return l.cfg.VM.Image.Profile }

// Accel is the accelerator the VM runs under (kvm or tcg).
func (l *Lab) Accel() string { return l.vm.Accel().Accel }

// LoginTimeout is the VM's bound for reaching a root shell.
func (l *Lab) LoginTimeout() time.Duration { return l.cfg.VM.Timeouts.Login }

// Milestones are the boot milestones so far, relative to QEMU's spawn.
func (l *Lab) Milestones() []vm.Milestone { return l.vm.Milestones() }

// GuardSilence bounds a wait on a firmware-booted ISO that says nothing on the serial
// console (vm.VM.GuardSilence).
func (l *Lab) GuardSilence(ctx context.Context) (context.Context, func(error) error, context.CancelFunc) {
	return l.vm.GuardSilence(ctx)
}

// Metadata is the run's metadata.json as recorded so far.
func (l *Lab) Metadata() runrec.Metadata { return l.rec.Metadata() }

// Path is a file's path in the run directory.
func (l *Lab) Path(name string) string { return l.rec.Path(name) }

// AdoptOptions describe a shell AdoptShell takes over.
type AdoptOptions struct {
	// From is the console position from which output is the shell's (taken before
	// the line that started or freed it was typed).
	From int64
	// Step bounds each step of the dialogue (the prompt, the framed probes).
	Step time.Duration
	// Channel lets the shell move framed commands to the virtio-serial channel when
	// the guest has its port (virtio_console loaded); without it, or without the port,
	// commands go over the console protocol.
	Channel bool
}

// AdoptShell takes over a root shell that is already open on the console (an
// installer's "Execute a shell", reached by driving its screens): it is verified as
// root like any login (prof says its prompt and that there is nothing to log in to),
// and from then on it is the lab's shell, so Run, Succeed, captures and the debug pause
// all use it.
func (l *Lab) AdoptShell(ctx context.Context, prof shell.Profile, o AdoptOptions) (*shell.Shell, error) {
	opts := shell.Options{
		Logger: l.vm.Log(), From: o.From, LoginTimeout: o.Step, StepTimeout: o.Step,
		Milestone: func(name string, _ time.Time) { l.vm.Mark(name) },
	}
	if o.Channel {
		opts.Channel = l.vm.Channel
	}
	sh, err := shell.Login(ctx, l.vm.Console(), prof, opts)
	if err != nil {
		l.diagnose("login", "taking over the shell on the console", err, escalationContext(sh, l.vm))
		return nil, err
	}
	l.vm.Adopt(sh)
	return sh, nil
}

// SSHPort is the host port forwarded to the guest's port 22 (0 without one).
func (l *Lab) SSHPort() int { return l.vm.SSHPort() }

// QMPSocket is the path of QEMU's QMP socket.
func (l *Lab) QMPSocket() string { return l.vm.Machine().Files.QMP }

// Upload writes data to path in the guest through the root shell (checked there by
// sha256, which it returns).
func (l *Lab) Upload(ctx context.Context, data []byte, path string) (string, error) {
	sh, err := l.shellOrErr()
	if err != nil {
		return "", err
	}
	return sh.Upload(ctx, data, path)
}

// Snapshot copies the run's metadata and boot evidence as they are now into a new run
// directory next to it (<dir>-name), so a state in the middle of the run can be
// compared (bootlab diff) while the run goes on; it returns that directory.
func (l *Lab) Snapshot(name string) (string, error) {
	dst := l.rec.Dir + "-" + name
	ev := filepath.FromSlash(rundiff.EvidenceDir)
	if err := os.MkdirAll(filepath.Join(dst, ev), 0o755); err != nil {
		return "", fmt.Errorf("creating the snapshot %s: %w", dst, err)
	}
	if err := l.rec.Save(); err != nil {
		return "", fmt.Errorf("saving metadata for the snapshot: %w", err)
	}
	files := [][2]string{{l.rec.Path(runrec.MetadataFile), filepath.Join(dst, runrec.MetadataFile)}}
	ents, err := os.ReadDir(l.rec.Path(rundiff.EvidenceDir))
	if err != nil {
		return "", fmt.Errorf("reading the evidence to snapshot (take it first: Evidence): %w", err)
	}
	for _, e := range ents {
		files = append(files, [2]string{filepath.Join(l.rec.Path(rundiff.EvidenceDir), e.Name()), filepath.Join(dst, ev, e.Name())})
	}
	for _, f := range files {
		b, err := os.ReadFile(f[0])
		if err == nil {
			err = os.WriteFile(f[1], b, 0o644)
		}
		if err != nil {
			return "", fmt.Errorf("snapshotting %s: %w", f[0], err)
		}
	}
	return dst, nil
}

// CommandTimeout is the VM's default bound for one framed command.
func (l *Lab) CommandTimeout() time.Duration { return l.cfg.VM.Timeouts.Command }

// WithProgress is ctx carrying the run's progress line (Options.Progress), unless it
// carries one already: every wait below it then shows its elapsed time there, a live
// line on a terminal and plain lines elsewhere (a scenario's test log).
func (l *Lab) WithProgress(ctx context.Context) context.Context {
	if l.line == nil || progress.FromContext(ctx) != nil {
		return ctx
	}
	return progress.WithLine(ctx, l.line)
}

// SaveState streams the guest's whole state to file and leaves it paused
// (qemu.Machine.SaveState); a VM started with vm.Spec.RestoreFrom=file on the same disks
// resumes there.
func (l *Lab) SaveState(ctx context.Context, file string) error {
	return l.vm.Machine().SaveState(ctx, file)
}

// RunState is QEMU's run state of the guest (query-status: running, paused, inmigrate,
// postmigrate, ...).
func (l *Lab) RunState(ctx context.Context) (string, error) { return l.vm.Machine().Status(ctx) }
