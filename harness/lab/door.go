package lab

import (
	"context"
	"errors"
	"os"
	"regexp"
	"time"

	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/screen"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// The door: callers above lab (the bootlab command, scenarios, bisect's prober, the
// installer's dialogs) name what they boot and do through this package alone; only lab
// and its own tests import vm, qemu, console, shell's internals and screen
// (docs/architecture.md, "The door"). What a caller describes is named here.
type (
	// Image is what to boot and how its console behaves (vm.Image).
	Image = vm.Image
	// Spec describes a VM (vm.Spec): image, disks, devices, timeouts.
	Spec = vm.Spec
	// Disk is a disk created for the VM, or an existing one by Path (vm.DiskSpec).
	Disk = vm.DiskSpec
	// Profile is how an image logs in, escalates and powers off (shell.Profile).
	Profile = shell.Profile
	// Timeouts bound each phase of a VM's life (vm.Timeouts); a zero field takes the
	// harness's default scaled by config.Config.TimeoutScale (lab.Start).
	Timeouts = vm.Timeouts
	// Launcher starts QEMU (qemu.Launcher): tests substitute a replay or a fake guest.
	Launcher = qemu.Launcher
)

// The image profiles bootlab knows (shell.Mini, shell.Fixture, shell.NixOS).
var (
	ProfileMini    = shell.Mini
	ProfileFixture = shell.Fixture
	ProfileNixOS   = shell.NixOS
)

// ProfileByName is the image profile called name (mini, fixture, nixos, ...).
func ProfileByName(name string) (Profile, error) { return shell.ByName(name) }

// The buses a CD-ROM can sit on (Image.CDROMBus; "": the machine's own, IDE).
const (
	CDROMIDE  = qemu.CDROMIDE
	CDROMSCSI = qemu.CDROMSCSI
)

// Files of a run directory that the VM writes.
const (
	SerialLog     = vm.SerialLog
	TranscriptLog = vm.TranscriptLog
	HarnessLog    = vm.HarnessLog
	ChannelLog    = vm.ChannelLog
	PIDFile       = vm.PIDFile
)

// HostError reports whether err is QEMU failing to run a guest at all (a locked disk
// image, a taken port, a binary that is missing or refuses the machine): the host's
// problem, said in QEMU's own words, not a verdict on the image.
func HostError(err error) bool {
	var se *qemu.StartError
	return errors.As(err, &se)
}

// CheckQEMU says what to install when the QEMU binary (config.Config.QEMU; "" is
// qemu-system-x86_64 on PATH) is not there.
func CheckQEMU(binary string) error {
	_, err := qemu.FindBinary(binary)
	return err
}

// MakeRaw puts the terminal f in raw mode (bootlab attach: every key goes to the guest).
func MakeRaw(f *os.File) error { return console.MakeRaw(f) }

// shell is the verified root shell Login made (nil before).
func (l *Lab) shell() *shell.Shell { return l.vm.Shell() }

// Transport is where framed commands travel (the virtio-serial channel or the console),
// "" before Login.
func (l *Lab) Transport() string {
	if sh := l.shell(); sh != nil {
		return sh.Transport()
	}
	return ""
}

// ConsoleMark is the position in the serial console's output now: what the guest
// prints from here on comes after it (ExpectConsole).
func (l *Lab) ConsoleMark() int64 { return l.vm.Console().Pos() }

// Type sends text to the serial console as keystrokes, as they are (no newline added,
// nothing framed), and returns the console position before it was typed: the guest's
// reaction comes after it. For screens and prompts no shell can reach (an installer's
// dialogs, a bisect script's send/expect); commands go through Run.
func (l *Lab) Type(ctx context.Context, text string) (int64, error) {
	from := l.vm.Console().Pos()
	return from, l.vm.Console().Send(ctx, text)
}

// ExpectConsole waits until the serial console's output after position from matches
// re, and returns the match and the position after it.
func (l *Lab) ExpectConsole(ctx context.Context, from int64, re *regexp.Regexp) (string, int64, error) {
	m, err := l.vm.Console().Expect(ctx, from, console.Pattern{Name: re.String(), Re: re})
	return m.Text, m.End, err
}

// ExpectChannel waits until the frame channel's output (framed command output as the
// guest writes it) contains text; it fails at once without a channel.
func (l *Lab) ExpectChannel(ctx context.Context, text string) error {
	ch := l.vm.Channel()
	if ch == nil {
		return errors.New("the frame channel is not connected")
	}
	_, err := ch.Expect(ctx, 0, console.Literal(text, text))
	return err
}

// ConsoleErr is why the serial console stopped reading (nil while the line is open):
// a probe tells a guest that went away from a bad one by it.
func (l *Lab) ConsoleErr() error { return l.vm.Console().Err() }

// ConsoleGone reports whether err is the serial console closing under a wait.
func ConsoleGone(err error) bool {
	var ce *console.ClosedError
	return errors.As(err, &ce) || errors.Is(err, console.ErrClosed)
}

// LastOutput is when the guest last wrote to the serial console.
func (l *Lab) LastOutput() time.Time { return l.vm.Console().LastOutput() }

// WatchScreen models the serial console as a cols x rows terminal screen from now on,
// answering the terminal queries a full-screen program sends as a real terminal would;
// stop detaches it. For installers and rescue images that draw rather than print.
func (l *Lab) WatchScreen(cols, rows int) (scr *screen.Screen, stop func()) {
	con := l.vm.Console()
	scr = screen.New(cols, rows, screen.WithReplies(con.Replier()))
	return scr, con.AddTee(scr)
}
