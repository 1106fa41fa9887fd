//go:build !linux

package qemu

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// groupAndDieWithParent puts QEMU in its own process group. Only Linux has a
// parent-death signal; elsewhere a harness killed outright can leave a QEMU behind
// (bootlab runs VMs on Linux; this lets the package build, and be documented, elsewhere).
func groupAndDieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// kernelRelease is the host kernel's release, part of the accelerator probe's key.
func kernelRelease() string {
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return ""
	}
	return unix.ByteSliceToString(uts.Release[:])
}
