package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/bootlab/bootlab/harness/lab"
)

// Every subcommand checks all of its flags here, before anything with a side effect: no
// KVM probe, no image build, no run directory, no socket. A usage mistake costs the
// user nothing but the message (exit 2), and the notes directory shows no failed run.

// readableFile is a usage error unless path names a regular file this process can open.
func readableFile(flagName, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return usagef("%s %s: %v", flagName, path, unwrapPathError(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return usagef("%s %s: %v", flagName, path, err)
	}
	if st.IsDir() {
		return usagef("%s %s: is a directory, want a file", flagName, path)
	}
	if st.Size() == 0 {
		return usagef("%s %s: is empty", flagName, path)
	}
	return nil
}

// existingDir is a usage error unless path is a directory.
func existingDir(what, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return usagef("%s %s: %v", what, path, unwrapPathError(err))
	}
	if !st.IsDir() {
		return usagef("%s %s: not a directory", what, path)
	}
	return nil
}

// unwrapPathError keeps "no such file or directory" without repeating the path.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// validate checks every flag of run and demo. It also normalises: --pause-after implies
// --debug.
func (f *runFlags) validate() error {
	given := 0
	for _, s := range []string{f.image, f.iso, f.kernel} {
		if s != "" {
			given++
		}
	}
	if given > 1 {
		return usagef("give one of --image, --iso or --kernel")
	}
	switch f.image {
	case "", "mini", "fixture":
	default:
		return usagef("unknown --image %q (mini or fixture)", f.image)
	}
	if f.iso != "" {
		if err := readableFile("--iso", f.iso); err != nil {
			return err
		}
	}
	if f.kernel != "" {
		if err := readableFile("--kernel", f.kernel); err != nil {
			return err
		}
	}
	if f.initrd != "" {
		if f.kernel == "" {
			return usagef("--initrd needs --kernel")
		}
		if err := readableFile("--initrd", f.initrd); err != nil {
			return err
		}
	}
	if f.profile != "" {
		if _, err := lab.ProfileByName(f.profile); err != nil {
			return usageError{err}
		}
	}
	if err := f.cfg.Validate(); err != nil { // --accel, --timeout-scale: one check, config's
		return usageError{err}
	}
	for _, d := range f.disks {
		if mb, err := strconv.Atoi(d); err != nil || mb <= 0 {
			return usagef("--disk %q: want a size in MiB (a positive whole number)", d)
		}
	}
	for _, c := range f.cmds {
		if c == "" {
			return usagef("--cmd: empty command")
		}
	}
	switch f.boot {
	case lab.BootAuto, lab.BootDirect, lab.BootFirmware:
	default:
		return usagef("--boot must be direct, firmware or auto, not %q", f.boot)
	}
	if (f.boot != lab.BootAuto || f.entry != "") && (f.kernel != "" || f.image == "mini") {
		return usagef("--boot and --entry are for ISOs (--iso, --image fixture)")
	}
	if f.entry != "" && f.boot == lab.BootFirmware {
		return usagef("--entry needs --boot direct or auto: through the firmware the bootloader boots its own default")
	}
	if _, err := lab.ParseCaptureMode(f.captures); err != nil {
		return usageError{err}
	}
	if f.inject != "" && f.inject != "pre-nixos" {
		return usagef("--inject: only pre-nixos can be injected, not %q", f.inject)
	}
	switch f.pauseAfter {
	case "":
	case "login", "network", "storage":
		// An ISO reaches those stages when its profile runs pre-nixos (nixos, fixture).
		runsPreNixos := f.iso != "" && f.profile != "" && f.profile != "mini"
		if f.pauseAfter != "login" && (f.iso != "" && !runsPreNixos || f.kernel != "" || f.image == "mini") {
			return usagef("--pause-after %s: only images that run pre-nixos (the fixture) reach that stage", f.pauseAfter)
		}
		f.debug = true
	default:
		return usagef("--pause-after must be login, network or storage, not %q", f.pauseAfter)
	}
	if f.debugWait <= 0 {
		return usagef("--debug-wait must be positive, not %s", f.debugWait)
	}
	if f.memory < 0 {
		return usagef("--memory must be positive, not %d", f.memory)
	}
	if launcher == nil {
		// A missing QEMU is the host's problem: exit 2 before anything is built.
		if err := lab.CheckQEMU(f.cfg.QEMU); err != nil {
			return usageError{err}
		}
	}
	if f.cfg.Notes != "" {
		if st, err := os.Stat(f.cfg.Notes); err == nil && !st.IsDir() {
			return usagef("--notes %s: not a directory", f.cfg.Notes)
		}
	}
	if f.slug != "" {
		for _, r := range f.slug {
			if r == '/' || r == 0 {
				return usagef("--slug %q: a run directory name cannot hold %q", f.slug, r)
			}
		}
	}
	return nil
}

// validLogFiles are the logs `bootlab log --file` prints.
var validLogFiles = []string{"serial.log", "transcript.log", "harness.log", "channel.log", "qemu-stderr.log"}

func validLogFile(name string) error {
	for _, v := range validLogFiles {
		if name == v {
			return nil
		}
	}
	return usagef("--file %q: want one of %v", name, validLogFiles)
}

// mustPositive is a usage error for a count flag that is zero or negative.
func mustPositive(flagName string, n int) error {
	if n <= 0 {
		return usagef("%s must be positive, not %s", flagName, fmt.Sprint(n))
	}
	return nil
}
