// Package replay is a stand-in QEMU that replays a real guest's serial console: it
// plays the recorded bytes of a serial log (testdata/nixos-consoles) onto the serial
// pty up to the automatic login, then runs a real bash on that pty dressed as NixOS's
// login shell: the green `[nixos@nixos:~]$` prompt after an empty line and with an OSC
// window title, bracketed paste, `sudo -i` to the red root prompt without a password,
// and `poweroff` refused for the user ("Interactive authentication required"). The
// harness's framing functions really run there, so `shell.Login` with the nixos profile,
// framed commands, milestones and the run records are tested against the bytes NixOS
// actually prints, in seconds and without an image.
//
// A recording without a login (QEMU's own error, e.g. the disk-lock failure) is written
// to the stand-in's stderr and it exits with status 1, as QEMU does.
//
// The bash is the host's: commands a real guest would run as root against its own
// kernel (dmesg -n, poweroff, systemctl) are replaced by small scripts first on PATH,
// so nothing touches the host.
package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/harness/qemu"
)

// autoLogin ends the recorded prefix: the getty's line announcing the automatic login,
// with its line end when the recording has one (in some recordings the old harness's
// typing follows on the same line; that is not the guest's and is not played).
var autoLogin = regexp.MustCompile(`\(automatic login\)\r*\n?`)

// qemuError is QEMU's own message on stderr ("qemu-system-x86_64: -drive ...: ...").
var qemuError = regexp.MustCompile(`(?m)^qemu-system-[a-z0-9_]+: `)

// Recording is a serial log split where the guest stops being replayed.
type Recording struct {
	// Prefix is played onto the serial line; with Login, a shell follows it.
	Prefix []byte
	Login  bool
	// QEMUError is set when the log is QEMU's own failure, not a guest's output.
	QEMUError bool
}

// Parse splits a serial log.
func Parse(b []byte) Recording {
	if loc := autoLogin.FindIndex(b); loc != nil {
		return Recording{Prefix: b[:loc[1]], Login: true}
	}
	if qemuError.Match(b) {
		return Recording{Prefix: b, QEMUError: true}
	}
	return Recording{Prefix: b}
}

// Launcher starts replay guests in place of QEMU (qemu.Launcher).
type Launcher struct {
	// Log is the serial log to replay.
	Log string
	// LineDelay paces the recorded prefix line by line (0: as fast as the pty takes
	// it), so milestones get distinct times.
	LineDelay time.Duration
	// Bash runs the shell (default: bash on PATH).
	Bash string
}

// Launch plays the recording on serial and returns the stand-in process.
func (l Launcher) Launch(ctx context.Context, binary string, args []string, serial *os.File, stderr io.Writer) (qemu.Process, error) {
	b, err := os.ReadFile(l.Log)
	if err != nil {
		return nil, fmt.Errorf("replay: reading the recording: %w", err)
	}
	rec := Parse(b)
	if rec.QEMUError {
		// QEMU refused to start: its words on stderr, exit status 1, no guest at all.
		_, _ = stderr.Write(rec.Prefix)
		return exited(1), nil
	}
	bash := l.Bash
	if bash == "" {
		if bash, err = exec.LookPath("bash"); err != nil {
			return nil, fmt.Errorf("replay: the replay guest's shell: %w (install bash)", err)
		}
	}
	// The VM closes its copy of the slave once "QEMU" has it: keep our own.
	fd, err := unix.Dup(int(serial.Fd()))
	if err != nil {
		return nil, fmt.Errorf("replay: duplicating the serial line: %w", err)
	}
	line := os.NewFile(uintptr(fd), "replay-serial")
	dir, err := os.MkdirTemp("", "bootlab-replay-")
	if err != nil {
		line.Close()
		return nil, fmt.Errorf("replay: creating the guest's directory: %w", err)
	}
	if err := writeGuest(dir); err != nil {
		line.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	p := &process{line: line, dir: dir, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run(rec, l.LineDelay, bash)
	return p, nil
}

// process is the stand-in QEMU: the playback, then the guest's login shell.
type process struct {
	line *os.File
	dir  string

	mu       sync.Mutex
	shell    *exec.Cmd
	stop     chan struct{}
	stopOnce sync.Once
	signal   syscall.Signal
	done     chan struct{}
	err      error
}

func (p *process) Pid() int { return os.Getpid() }

func (p *process) run(rec Recording, delay time.Duration, bash string) {
	defer close(p.done)
	defer os.RemoveAll(p.dir)
	defer p.line.Close()
	if err := p.play(rec.Prefix, delay); err != nil {
		p.err = err
		return
	}
	if !rec.Login {
		// A guest that never logs in: silent until it is stopped.
		<-p.stop
		p.err = p.killedErr()
		return
	}
	if err := setSane(p.line); err != nil {
		p.err = err
		return
	}
	cmd := exec.Command(bash, "--noprofile", "--rcfile", filepath.Join(p.dir, "userrc"), "-i")
	cmd.Dir = filepath.Join(p.dir, "home", "nixos")
	cmd.Env = guestEnv(p.dir, "1000", filepath.Join(p.dir, "home", "nixos"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.line, p.line, p.line
	// Its own session with the serial line as controlling terminal, as a getty's
	// login shell has: job control works and a hangup reaches the whole session.
	cmd.SysProcAttr = sessionLeader()
	p.mu.Lock()
	select {
	case <-p.stop:
		p.mu.Unlock()
		p.err = p.killedErr()
		return
	default:
	}
	err := cmd.Start()
	if err == nil {
		p.shell = cmd
	}
	p.mu.Unlock()
	if err != nil {
		p.err = fmt.Errorf("replay: starting the guest's shell: %w", err)
		return
	}
	werr := cmd.Wait()
	switch {
	case fileExists(filepath.Join(p.dir, "powered-off")):
		p.err = nil // the guest powered itself off, as QEMU exits 0 then
	case p.killedErr() != nil:
		p.err = p.killedErr()
	default:
		p.err = fmt.Errorf("replay: the guest's shell ended: %w", werr)
	}
}

// play writes the recorded bytes, line by line when paced; a stop ends it early.
func (p *process) play(b []byte, delay time.Duration) error {
	for len(b) > 0 {
		n := len(b)
		if delay > 0 {
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				n = i + 1
			}
		}
		if _, err := p.line.Write(b[:n]); err != nil {
			return fmt.Errorf("replay: writing the recording to the serial line: %w", err)
		}
		b = b[n:]
		if delay > 0 {
			select {
			case <-p.stop:
				return p.killedErr()
			case <-time.After(delay):
			}
		}
	}
	return nil
}

func (p *process) killedErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signal == 0 {
		return nil
	}
	return errors.New("signal: " + p.signal.String())
}

func (p *process) Wait() error {
	<-p.done
	return p.err
}

// Signal stops the stand-in as a signal stops QEMU: playback ends and the guest's
// session is killed.
func (p *process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	if p.signal == 0 {
		p.signal = sig
	}
	sh := p.shell
	p.mu.Unlock()
	p.stopOnce.Do(func() { close(p.stop) })
	if sh != nil && sh.Process != nil {
		// The session leader's process group, then the leader: its jobs get the
		// hangup when it dies.
		_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
		_ = sh.Process.Kill()
	}
	return nil
}

// exited is a stand-in that has already ended with an exit status.
type exitedProc struct{ code int }

func exited(code int) *exitedProc { return &exitedProc{code} }

func (e *exitedProc) Pid() int                    { return 0 }
func (e *exitedProc) Signal(syscall.Signal) error { return nil }
func (e *exitedProc) Wait() error                 { return ExitError{e.code} }

// ExitError is the stand-in's exit status, worded as QEMU's would be.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// setSane gives the serial line the settings a getty leaves for a login shell (the
// harness made it raw for QEMU): canonical input, echo, CR-LF output. The harness's own
// `stty -echo -onlcr` then works on it as on a guest's ttyS0.
func setSane(f *os.File) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return fmt.Errorf("replay: reading the serial line's settings: %w", err)
	}
	t.Iflag |= unix.ICRNL | unix.IXON | unix.BRKINT
	t.Iflag &^= unix.INLCR | unix.IGNCR
	t.Oflag |= unix.OPOST | unix.ONLCR
	t.Lflag |= unix.ECHO | unix.ECHOE | unix.ECHOK | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag |= unix.CS8 | unix.CREAD
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	t.Cc[unix.VINTR], t.Cc[unix.VEOF], t.Cc[unix.VERASE] = 3, 4, 0x7f
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, t); err != nil {
		return fmt.Errorf("replay: setting the serial line's settings: %w", err)
	}
	// The recording asks for the cursor position (ESC[6n) and the harness answers, as it
	// must for a real guest; there the answer went to the program that asked. agetty
	// flushes pending input before the login too; without this, bash would read the
	// answers as a typed line.
	time.Sleep(100 * time.Millisecond)
	if err := flushInput(fd); err != nil {
		return fmt.Errorf("replay: flushing the serial line's input: %w", err)
	}
	return nil
}

func guestEnv(dir, uid, home string) []string {
	return []string{
		"PATH=" + filepath.Join(dir, "bin") + ":" + os.Getenv("PATH"),
		"HOME=" + home,
		// agetty's TERM on a serial line; "dumb" would turn bracketed paste off.
		"TERM=vt220",
		"INPUTRC=" + filepath.Join(dir, "inputrc"),
		"HISTFILE=/dev/null",
		"REPLAY_DIR=" + dir,
		"REPLAY_UID=" + uid,
		// The framing functions' output files stay in the guest's directory.
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"LANG=C",
	}
}
