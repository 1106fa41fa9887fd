// Package qemu turns a typed machine description into a QEMU command line, starts it with
// the guest serial line on a pseudo-terminal the caller owns, talks QMP over a unix
// socket in a private run directory, and stops it in bounded stages so that no QEMU is
// ever left behind.
package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Accelerators bootlab knows how to ask for.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// CD-ROM buses (Config.CDROMBus).
const (
	CDROMIDE  = "ide"
	CDROMSCSI = "scsi"
)

// Disk is one block device of the guest.
type Disk struct {
	Path   string
	Format string // raw (default) or qcow2
	// Bus is virtio (default, /dev/vdX in the guest) or scsi-hd (/dev/sdX), which can
	// report itself as rotational through RotationRate.
	Bus          string
	RotationRate int    // scsi-hd only; 1 means SSD, 7200 a spinning disk
	Serial       string // shows up as /dev/disk/by-id/*<serial>
	ReadOnly     bool
}

// Forward exposes a guest TCP port on 127.0.0.1 (never another address).
type Forward struct {
	Name      string // e.g. "ssh"
	GuestPort int
	HostPort  int // 0: the launcher picks a free one, and picks again on collision
}

// Config describes a machine: an ISO booted through the firmware, a Kernel (+Initrd,
// Append) booted directly, or both: the kernel booted directly with the ISO attached as
// a CD-ROM, so that an upstream ISO's initramfs finds its root by label as on hardware
// while the kernel talks on the serial console its own bootloader would not give it.
type Config struct {
	Name     string // for ps listings and the QEMU window title
	Binary   string // default qemu-system-x86_64 from PATH
	Accel    string // kvm or tcg; the harness probes before choosing
	MemoryMB int    // default 1024
	CPUs     int    // default 1
	// CPUModel is -cpu (e.g. max); empty leaves QEMU's default (qemu64 under TCG).
	CPUModel string
	// TBSizeMB is TCG's translation-block cache size (-accel tcg,tb-size=N); 0 keeps
	// QEMU's default. Ignored under KVM, which translates nothing.
	TBSizeMB int
	ISO      string
	// CDROMBus is the bus the ISO's CD-ROM hangs on: "ide" (the default, what every
	// firmware and installer finds) or "scsi" (a virtio-scsi controller of its own,
	// added after every other device so their PCI addresses stay as they were).
	CDROMBus string
	Kernel   string
	Initrd   string
	Append   string
	Disks    []Disk
	// Net adds a virtio NIC on QEMU user networking (slirp: guest 10.0.2.15, DHCP).
	Net      bool
	Forwards []Forward
	// RNG adds virtio-rng fed from the host's /dev/urandom, so early key generation in
	// the guest does not stall for entropy.
	RNG bool
	// Channel adds a virtio-serial port named Channel.Name whose host side connects to
	// the unix socket Channel.Socket, where the harness listens (it must be listening
	// before Start: QEMU connects while it starts and fails if nobody answers).
	Channel *Channel
	// RestoreFrom is a state file Machine.SaveState wrote from a VM with the same
	// devices: QEMU starts with -incoming and resumes that guest instead of booting.
	RestoreFrom string
	// HotplugSCSI adds an empty virtio-scsi controller (scsi0, after every other
	// device) for scsi-hd disks attached later with Machine.AttachDisk: a machine that
	// is saved without disks and given them after the restore must have it from the
	// start, since a restore needs the saved device set.
	HotplugSCSI bool
	Extra       []string // appended verbatim, for what this type does not model
}

// Channel is a virtio-serial port for structured guest-to-host data, apart from the
// console (no kernel messages, no line discipline, no getty).
type Channel struct {
	Name   string // the port name the guest sees in /sys/class/virtio-ports/*/name
	Socket string // unix socket path on the host
}

// Validate reports configuration mistakes before anything is started.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.ISO == "" && c.Kernel == "":
		errs = append(errs, errors.New("no boot image: give an ISO or a kernel (+initrd)"))
	}
	if c.CDROMBus != "" && c.CDROMBus != CDROMIDE && c.CDROMBus != CDROMSCSI {
		errs = append(errs, fmt.Errorf("CD-ROM bus %q is not %s or %s", c.CDROMBus, CDROMIDE, CDROMSCSI))
	}
	if c.CDROMBus != "" && c.ISO == "" {
		errs = append(errs, errors.New("a CD-ROM bus needs an ISO"))
	}
	if c.Kernel == "" && (c.Initrd != "" || c.Append != "") {
		errs = append(errs, errors.New("an initrd or kernel command line needs a kernel"))
	}
	for _, f := range []struct{ what, path string }{{"ISO", c.ISO}, {"kernel", c.Kernel}, {"initrd", c.Initrd}} {
		if f.path == "" {
			continue
		}
		if err := regularFile(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", f.what, f.path, err))
		}
	}
	for i, d := range c.Disks {
		if err := regularFile(d.Path); err != nil {
			errs = append(errs, fmt.Errorf("disk %d %s: %w", i, d.Path, err))
		}
		if d.Format != "" && d.Format != "raw" && d.Format != "qcow2" {
			errs = append(errs, fmt.Errorf("disk %d %s: format %q is not raw or qcow2", i, d.Path, d.Format))
		}
		if d.Bus != "" && d.Bus != "virtio" && d.Bus != "scsi-hd" {
			errs = append(errs, fmt.Errorf("disk %d %s: bus %q is not virtio or scsi-hd", i, d.Path, d.Bus))
		}
	}
	if c.RestoreFrom != "" {
		if err := CheckStatePath(c.RestoreFrom); err != nil {
			errs = append(errs, err)
		} else if err := regularFile(c.RestoreFrom); err != nil {
			errs = append(errs, fmt.Errorf("restore file %s: %w", c.RestoreFrom, err))
		}
	}
	if c.Accel != "" && c.Accel != AccelKVM && c.Accel != AccelTCG {
		errs = append(errs, fmt.Errorf("accelerator %q is not kvm or tcg", c.Accel))
	}
	if c.Channel != nil && (c.Channel.Name == "" || c.Channel.Socket == "") {
		errs = append(errs, errors.New("a channel needs a port name and a socket path"))
	}
	if len(c.Forwards) > 0 && !c.Net {
		errs = append(errs, errors.New("port forwards need Net"))
	}
	return errors.Join(errs...)
}

func regularFile(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("does not exist")
		}
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("is not a regular file (%s)", st.Mode().Type())
	}
	if st.Size() == 0 {
		return errors.New("is empty")
	}
	return nil
}

// Args builds QEMU's arguments (without the binary). qmpSocket and pidFile live in the
// private run directory.
func (c *Config) Args(qmpSocket, pidFile string) []string {
	mem := c.MemoryMB
	if mem <= 0 {
		mem = 1024
	}
	cpus := c.CPUs
	if cpus <= 0 {
		cpus = 1
	}
	accel := c.Accel
	if accel == "" {
		accel = AccelTCG
	}
	name := c.Name
	if name == "" {
		name = "bootlab"
	}
	accelOpt := accel
	if accel == AccelTCG && c.TBSizeMB > 0 {
		accelOpt += ",tb-size=" + strconv.Itoa(c.TBSizeMB)
	}
	a := []string{
		"-name", name,
		"-accel", accelOpt,
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		"-display", "none",
		// A guest reboot ends the run instead of silently starting a second boot.
		"-no-reboot",
		"-monitor", "none",
		// signal=off: a 0x03 typed to the guest interrupts a guest command instead of
		// killing QEMU (docs/decisions.md, "The serial line is QEMU's stdio").
		"-chardev", "stdio,id=ser0,signal=off",
		"-serial", "chardev:ser0",
		"-qmp", "unix:" + qmpSocket + ",server=on,wait=off",
		"-pidfile", pidFile,
	}
	if c.CPUModel != "" {
		a = append(a, "-cpu", c.CPUModel)
	}
	if c.ISO != "" && c.CDROMBus != CDROMSCSI {
		a = append(a, "-drive", "file="+escapeOpt(c.ISO)+",media=cdrom,readonly=on,if=ide,index=2")
		if c.Kernel == "" {
			a = append(a, "-boot", "order=d")
		}
	}
	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			a = append(a, "-append", c.Append)
		}
	}
	scsi := false
	for i, d := range c.Disks {
		format := d.Format
		if format == "" {
			format = "raw"
		}
		id := "disk" + strconv.Itoa(i)
		drive := "file=" + escapeOpt(d.Path) + ",if=none,id=" + id + ",format=" + format
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive)
		serial := ""
		if d.Serial != "" {
			serial = ",serial=" + escapeOpt(d.Serial)
		}
		if d.Bus == "scsi-hd" {
			if !scsi {
				a = append(a, "-device", "virtio-scsi-pci,id="+scsiController)
				scsi = true
			}
			dev := "scsi-hd,bus=" + scsiController + ".0,drive=" + id + serial
			if d.RotationRate > 0 {
				dev += ",rotation_rate=" + strconv.Itoa(d.RotationRate)
			}
			a = append(a, "-device", dev)
		} else {
			a = append(a, "-device", "virtio-blk-pci,drive="+id+serial)
		}
	}
	if c.Net {
		netdev := "user,id=net0"
		for _, f := range c.Forwards {
			// 127.0.0.1 always: a forwarded guest sshd must not be reachable from the LAN.
			netdev += ",hostfwd=tcp:127.0.0.1:" + strconv.Itoa(f.HostPort) + "-:" + strconv.Itoa(f.GuestPort)
		}
		a = append(a, "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0")
	} else {
		a = append(a, "-nic", "none")
	}
	if c.RNG {
		a = append(a, "-object", "rng-random,filename=/dev/urandom,id=rng0", "-device", "virtio-rng-pci,rng=rng0")
	}
	if c.Channel != nil {
		a = append(a,
			"-device", "virtio-serial-pci,id=blvser",
			"-chardev", "socket,id=blchan,path="+escapeOpt(c.Channel.Socket),
			"-device", "virtserialport,bus=blvser.0,chardev=blchan,name="+escapeOpt(c.Channel.Name))
	}
	if c.HotplugSCSI && !scsi {
		a = append(a, "-device", "virtio-scsi-pci,id="+scsiController)
	}
	if c.ISO != "" && c.CDROMBus == CDROMSCSI {
		// Last, so the devices above keep the PCI slots they have on the IDE layout.
		// bootindex makes SeaBIOS boot it when no kernel is given.
		cd := "scsi-cd,bus=scsicd.0,drive=cd0"
		if c.Kernel == "" {
			cd += ",bootindex=0"
		}
		a = append(a, "-device", "virtio-scsi-pci,id=scsicd",
			"-drive", "file="+escapeOpt(c.ISO)+",if=none,id=cd0,media=cdrom,readonly=on", "-device", cd)
	}
	if c.RestoreFrom != "" {
		a = append(a, "-incoming", "exec:cat "+c.RestoreFrom)
	}
	return append(a, c.Extra...)
}

// scsiController is the id of the virtio-scsi controller scsi-hd disks hang on.
const scsiController = "scsi0"

// escapeOpt doubles commas, QEMU's escape inside option values.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// RunFiles are the files QEMU uses in the run directory.
type RunFiles struct {
	Dir, QMP, PID, Stderr string
	// Channel is where the harness listens for the frame channel's port.
	Channel string
}

// NewRunFiles makes dir private (0700): the QMP socket gives full control of the VM to
// whoever can connect, so it must not be in a directory others can enter.
func NewRunFiles(dir string) (RunFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return RunFiles{}, fmt.Errorf("creating QEMU run directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return RunFiles{}, fmt.Errorf("making QEMU run directory private: %w", err)
	}
	// Unix socket paths are limited to 108 bytes; a deep notes directory would break QMP.
	qmp := filepath.Join(dir, "qmp.sock")
	if len(qmp) > 100 {
		return RunFiles{}, fmt.Errorf("QEMU run directory path too long for a unix socket (%d bytes): %s", len(qmp), dir)
	}
	return RunFiles{Dir: dir, QMP: qmp, PID: filepath.Join(dir, "qemu.pid"), Stderr: filepath.Join(dir, "qemu-stderr.log"), Channel: filepath.Join(dir, "frame.sock")}, nil
}
