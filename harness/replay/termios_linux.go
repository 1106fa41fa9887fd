package replay

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// The termios ioctls by their Linux names; termios_bsd.go has the BSDs' (and macOS's),
// so the package builds there too.
const (
	ioctlGetTermios = unix.TCGETS
	ioctlSetTermios = unix.TCSETS
)

// flushInput drops what was typed on the line and not yet read (tcflush TCIFLUSH).
func flushInput(fd int) error { return unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH) }

// sessionLeader starts a process in its own session with the line as its controlling
// terminal, killed when the replay dies.
func sessionLeader() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
}
