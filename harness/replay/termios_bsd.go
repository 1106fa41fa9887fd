//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package replay

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// The termios ioctls by their BSD names (termios_linux.go has Linux's).
const (
	ioctlGetTermios = unix.TIOCGETA
	ioctlSetTermios = unix.TIOCSETA
)

// flushInput drops what was typed on the line and not yet read (TIOCFLUSH with FREAD).
func flushInput(fd int) error { return unix.IoctlSetPointerInt(fd, unix.TIOCFLUSH, 1) }

// sessionLeader starts a process in its own session with the line as its controlling
// terminal (no parent-death signal outside Linux).
func sessionLeader() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
}
