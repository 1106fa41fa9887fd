package labtest

import "golang.org/x/sys/unix"

// The termios ioctls by their Linux names; termios_bsd.go has the BSDs' (and macOS's),
// so the package builds there too.
const (
	ioctlGetTermios = unix.TCGETS
	ioctlSetTermios = unix.TCSETS
)
