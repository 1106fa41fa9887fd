package qemu

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// groupAndDieWithParent puts QEMU in its own process group (so a stop can signal the
// group) and has the kernel kill it when the harness dies, so an interrupted run never
// leaves a QEMU behind.
func groupAndDieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// kernelRelease is the host kernel's release (uname -r), part of the accelerator
// probe's cache key.
func kernelRelease() string {
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return ""
	}
	return unix.ByteSliceToString(uts.Release[:])
}
