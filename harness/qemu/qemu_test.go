package qemu

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o755))
	return p
}

func TestArgsKernelDisksNetRNG(t *testing.T) {
	k := file(t, "vmlinuz", "k")
	d := file(t, "a,b.img", "d")
	c := Config{Name: "t", Accel: AccelTCG, Kernel: k, Append: "console=ttyS0", Net: true, RNG: true,
		Forwards: []Forward{{Name: "ssh", GuestPort: 22, HostPort: 2222}},
		Disks:    []Disk{{Path: d}, {Path: d, Bus: "scsi-hd", RotationRate: 7200, Serial: "hdd1"}}}
	require.NoError(t, c.Validate())
	a := strings.Join(c.Args("/run/q.sock", "/run/q.pid"), " ")
	for _, want := range []string{
		"-accel tcg", "-kernel " + k, "-append console=ttyS0", "-no-reboot",
		"-chardev stdio,id=ser0,signal=off", "-serial chardev:ser0", "-monitor none",
		"-qmp unix:/run/q.sock,server=on,wait=off", "-pidfile /run/q.pid",
		"file=" + strings.ReplaceAll(d, ",", ",,") + ",if=none,id=disk0,format=raw",
		"-device virtio-blk-pci,drive=disk0",
		"-device virtio-scsi-pci,id=scsi0", "scsi-hd,bus=scsi0.0,drive=disk1,serial=hdd1,rotation_rate=7200",
		"hostfwd=tcp:127.0.0.1:2222-:22", "virtio-rng-pci",
	} {
		require.Contains(t, a, want)
	}
	require.NotContains(t, a, "hostfwd=tcp::", "forwards never bind all addresses")
	require.NotContains(t, a, "-nographic", "no monitor multiplexed onto the serial line")
}

func TestArgsFrameChannel(t *testing.T) {
	c := Config{Kernel: file(t, "vmlinuz", "k"), Channel: &Channel{Name: "org.bootlab.frame", Socket: "/run/a,b/frame.sock"}}
	require.NoError(t, c.Validate())
	a := strings.Join(c.Args("/run/q.sock", "/run/q.pid"), " ")
	require.Contains(t, a, "-device virtio-serial-pci,id=blvser")
	// A client socket (no server=on): the harness listens before QEMU starts.
	require.Contains(t, a, "-chardev socket,id=blchan,path=/run/a,,b/frame.sock -device")
	require.Contains(t, a, "-device virtserialport,bus=blvser.0,chardev=blchan,name=org.bootlab.frame")
	none := Config{Kernel: c.Kernel}
	require.NotContains(t, strings.Join(none.Args("/run/q.sock", "/run/q.pid"), " "), "virtserialport")
}

// Direct boot of an upstream ISO's entry: QEMU loads the kernel itself and the ISO stays
// attached as a CD-ROM for the initramfs to find; the firmware must not boot the CD.
func TestArgsDirectBootKeepsTheISOAttached(t *testing.T) {
	c := Config{ISO: file(t, "x.iso", "x"), Kernel: file(t, "k", "k"), Initrd: file(t, "i", "i"), Append: "quiet console=ttyS0,115200n8"}
	require.NoError(t, c.Validate())
	a := strings.Join(c.Args("/run/q.sock", "/run/q.pid"), " ")
	require.Contains(t, a, "media=cdrom")
	require.Contains(t, a, "-kernel "+c.Kernel+" -initrd "+c.Initrd+" -append quiet console=ttyS0,115200n8")
	require.NotContains(t, a, "-boot order=d")
}

// The CD-ROM on virtio-scsi: no IDE drive at all, its own controller after every other
// device (the disks' and NIC's PCI slots stay what they are on the IDE layout), and the
// firmware boots it through bootindex when no kernel is given.
func TestArgsCDROMOnVirtioSCSI(t *testing.T) {
	iso, k, d := file(t, "x.iso", "x"), file(t, "k", "k"), file(t, "d.img", "d")
	ide := Config{ISO: iso, Kernel: k, Disks: []Disk{{Path: d}}, Net: true}
	scsi := ide
	scsi.CDROMBus = CDROMSCSI
	require.NoError(t, scsi.Validate())
	a := strings.Join(scsi.Args("/run/q.sock", "/run/q.pid"), " ")
	require.NotContains(t, a, "if=ide")
	require.Contains(t, a, "-device virtio-scsi-pci,id=scsicd -drive file="+iso+",if=none,id=cd0,media=cdrom,readonly=on -device scsi-cd,bus=scsicd.0,drive=cd0")
	require.NotContains(t, a, "bootindex", "a direct boot must not boot the CD")
	devices := func(args []string) []string {
		var out []string
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-device" {
				out = append(out, args[i+1])
			}
		}
		return out
	}
	want := append(devices(ide.Args("/run/q.sock", "/run/q.pid")), "virtio-scsi-pci,id=scsicd", "scsi-cd,bus=scsicd.0,drive=cd0")
	require.Equal(t, want, devices(scsi.Args("/run/q.sock", "/run/q.pid")), "the devices before the CD keep their order (and PCI slots)")

	fw := Config{ISO: iso, CDROMBus: CDROMSCSI}
	fa := strings.Join(fw.Args("/run/q.sock", "/run/q.pid"), " ")
	require.Contains(t, fa, "scsi-cd,bus=scsicd.0,drive=cd0,bootindex=0")
	require.NotContains(t, fa, "-boot order=d")

	require.ErrorContains(t, (&Config{ISO: iso, CDROMBus: "sata"}).Validate(), `CD-ROM bus "sata"`)
	require.ErrorContains(t, (&Config{Kernel: k, CDROMBus: CDROMSCSI}).Validate(), "needs an ISO")
}

// The CPU knobs the boot benchmark measures: tb-size rides on TCG's -accel (it means
// nothing to KVM), -cpu appears only when asked for.
func TestArgsCPUModelAndTBSize(t *testing.T) {
	k := file(t, "vmlinuz", "k")
	c := Config{Accel: AccelTCG, Kernel: k, CPUs: 2, CPUModel: "max", TBSizeMB: 256}
	a := strings.Join(c.Args("/run/q.sock", "/run/q.pid"), " ")
	require.Contains(t, a, "-accel tcg,tb-size=256 ")
	require.Contains(t, a, "-smp 2 ")
	require.Contains(t, a, "-cpu max")
	kvm := Config{Accel: AccelKVM, Kernel: k, TBSizeMB: 256}
	a = strings.Join(kvm.Args("/run/q.sock", "/run/q.pid"), " ")
	require.Contains(t, a, "-accel kvm ")
	require.NotContains(t, a, "tb-size")
	require.NotContains(t, a, "-cpu ")
}

func TestValidateRejectsBadInput(t *testing.T) {
	empty := file(t, "empty.iso", "")
	cases := map[string]Config{
		"nothing to boot":      {},
		"missing iso":          {ISO: "/nonexistent/image.iso"},
		"empty iso":            {ISO: empty},
		"directory kernel":     {Kernel: t.TempDir()},
		"bad format":           {Kernel: file(t, "k2", "k"), Disks: []Disk{{Path: file(t, "d", "d"), Format: "vmdk"}}},
		"forward needs net":    {Kernel: file(t, "k3", "k"), Forwards: []Forward{{GuestPort: 22}}},
		"bad accel":            {Kernel: file(t, "k4", "k"), Accel: "hvf"},
		"channel without name": {Kernel: file(t, "k5", "k"), Channel: &Channel{Socket: "/run/c.sock"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			require.Error(t, c.Validate())
		})
	}
	err := (&Config{ISO: "/nonexistent/image.iso"}).Validate()
	require.ErrorContains(t, err, "/nonexistent/image.iso: does not exist")
}

func TestMissingBinaryNamesThePackage(t *testing.T) {
	_, err := FindBinary("qemu-system-does-not-exist")
	require.ErrorContains(t, err, "apt-get install qemu-system-x86")
}

func runFiles(t *testing.T) RunFiles {
	dir, err := os.MkdirTemp("", "bl-q")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := NewRunFiles(dir)
	require.NoError(t, err)
	st, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "the QMP socket's directory is private")
	return f
}

// fakeQEMU is a script standing in for QEMU: it fails the way QEMU does.
func fakeQEMU(t *testing.T, body string) string {
	return file(t, "fake-qemu", "#!/bin/sh\n"+body+"\n")
}

func TestHostfwdCollisionIsRetriedOnAnotherPort(t *testing.T) {
	// The fake fails the first launch like QEMU does when the port is taken, then runs.
	marker := filepath.Join(t.TempDir(), "tried")
	bin := fakeQEMU(t, `if [ ! -e `+marker+` ]; then touch `+marker+`; echo "qemu-system-x86_64: -netdev user,id=net0,hostfwd=tcp:127.0.0.1:5555-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:5555-:22'" >&2; exit 1; fi; exec sleep 30`)
	cfg := Config{Binary: bin, Kernel: file(t, "k", "k"), Net: true, Forwards: []Forward{{Name: "ssh", GuestPort: 22}}}
	m, err := Start(context.Background(), cfg, StartOptions{Files: runFiles(t), Launcher: ExecLauncher{}, EarlyExitWindow: 300 * time.Millisecond})
	require.NoError(t, err)
	defer m.Kill()
	require.NotZero(t, m.HostPort("ssh"))
	stage, err := m.Stop(context.Background(), nil, StopTimeouts{Powerdown: 100 * time.Millisecond, Quit: 100 * time.Millisecond, Term: 2 * time.Second, Kill: 2 * time.Second})
	require.NoError(t, err)
	require.Equal(t, StopTerm, stage, "no QMP here: SIGTERM ends it")
}

func TestLockedImageNamesTheImage(t *testing.T) {
	disk := file(t, "disk.img", "d")
	bin := fakeQEMU(t, `echo "qemu-system-x86_64: -drive file=`+disk+`,if=none,id=disk0,format=raw: Failed to get \"write\" lock" >&2; echo "Is another process using the image [`+disk+`]?" >&2; exit 1`)
	cfg := Config{Binary: bin, Kernel: file(t, "k", "k"), Disks: []Disk{{Path: disk}}}
	_, err := Start(context.Background(), cfg, StartOptions{Files: runFiles(t), EarlyExitWindow: time.Second})
	var se *StartError
	require.True(t, errors.As(err, &se), "got %v", err)
	require.Contains(t, se.Reason, disk)
	require.Equal(t, "exit status 1", se.ExitStatus)
	require.Contains(t, err.Error(), "Failed to get")
}

func TestEarlyExitCarriesStatusAndStderr(t *testing.T) {
	bin := fakeQEMU(t, `echo "qemu: could not load kernel '/x'" >&2; exit 7`)
	_, err := Start(context.Background(), Config{Binary: bin, Kernel: file(t, "k", "k")}, StartOptions{Files: runFiles(t), EarlyExitWindow: time.Second})
	require.ErrorContains(t, err, "exit status 7")
	require.ErrorContains(t, err, "could not load kernel")
}

func TestStopKillsAStubbornProcessAndReaps(t *testing.T) {
	// Ignores SIGTERM: only SIGKILL ends it.
	bin := fakeQEMU(t, `trap '' TERM; while :; do sleep 1; done`)
	m, err := Start(context.Background(), Config{Binary: bin, Kernel: file(t, "k", "k")}, StartOptions{Files: runFiles(t), EarlyExitWindow: 200 * time.Millisecond})
	require.NoError(t, err)
	pid := m.Pid()
	stage, err := m.Stop(context.Background(), nil, StopTimeouts{Powerdown: 50 * time.Millisecond, Quit: 50 * time.Millisecond, Term: 300 * time.Millisecond, Kill: 3 * time.Second})
	require.NoError(t, err)
	require.Equal(t, StopKill, stage)
	require.Equal(t, "killed by signal killed", m.ExitStatus())
	require.Error(t, syscall.Kill(pid, 0), "process %d is gone and reaped", pid)
}

func TestForwardBindsLoopbackOnly(t *testing.T) {
	p, err := FreePort()
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	require.NotEqual(t, l.Addr().(*net.TCPAddr).Port, p)
}

func TestProbeWithoutKVMDeviceChoosesTCG(t *testing.T) {
	t.Setenv("BOOTLAB_ACCEL", "")
	c := ProbeAccel(context.Background(), ProbeOptions{KVMDevice: "/nonexistent/kvm", Kernel: "/x"})
	require.Equal(t, AccelTCG, c.Accel)
	require.Contains(t, c.Reason, "/nonexistent/kvm")
	// The environment is read once, at the edge (config.FromEnv); a forced accelerator
	// arrives as vm.Spec.Accel and never reaches the probe.
	t.Setenv("BOOTLAB_ACCEL", "kvm")
	c = ProbeAccel(context.Background(), ProbeOptions{KVMDevice: "/nonexistent/kvm"})
	require.Equal(t, AccelTCG, c.Accel, "the probe must not read BOOTLAB_ACCEL")
}

func TestProbeCacheIsKeyedAndExpires(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accel.json")
	writeProbeCache(path, AccelChoice{Accel: AccelKVM, Reason: "worked", At: time.Now(), Key: "k1"})
	c, ok := readProbeCache(path, "k1", time.Hour)
	require.True(t, ok)
	require.Equal(t, AccelKVM, c.Accel)
	_, ok = readProbeCache(path, "k2", time.Hour)
	require.False(t, ok, "another QEMU or kernel is probed again")
	writeProbeCache(path, AccelChoice{Accel: AccelTCG, Reason: "hung", At: time.Now(), Key: "k2"})
	c, ok = readProbeCache(path, "k1", time.Hour)
	require.True(t, ok, "another kernel's verdict does not evict this one")
	require.Equal(t, AccelKVM, c.Accel)
	writeProbeCache(path, AccelChoice{Accel: AccelKVM, At: time.Now().Add(-2 * time.Hour), Key: "k1"})
	_, ok = readProbeCache(path, "k1", time.Hour)
	require.False(t, ok, "old verdicts expire")
}

// TestArgsRestoreFrom: a saved state is read back with -incoming; a path a shell would
// split or expand, or a file that is not there, is refused before QEMU starts.
func TestArgsRestoreFrom(t *testing.T) {
	state := file(t, "guest.state", "s")
	c := Config{Kernel: file(t, "vmlinuz", "k"), RestoreFrom: state}
	require.NoError(t, c.Validate())
	require.Contains(t, strings.Join(c.Args("/q", "/p"), " "), "-incoming exec:cat "+state)

	c.RestoreFrom = "/tmp/a b"
	require.ErrorContains(t, c.Validate(), "only letters, digits")
	c.RestoreFrom = filepath.Join(t.TempDir(), "missing.state")
	require.ErrorContains(t, c.Validate(), "restore file")
}

// TestEarlyExitWindowFollowsLoad: on a loaded machine QEMU takes longer to refuse a bad
// kernel; its death 0.8 s after launch is still a StartError when the load factor is 4
// (the idle window is 500 ms), not a machine that seems to run.
func TestEarlyExitWindowFollowsLoad(t *testing.T) {
	old := loadFactor
	loadFactor = func() float64 { return 4 }
	defer func() { loadFactor = old }()
	bin := fakeQEMU(t, `sleep 0.8; echo "qemu-system-x86_64: Error loading uncompressed kernel without PVH ELF Note" >&2; exit 1`)
	m, err := Start(context.Background(), Config{Binary: bin, Kernel: file(t, "k", "k")}, StartOptions{Files: runFiles(t)})
	if m != nil {
		m.Kill()
	}
	var se *StartError
	require.True(t, errors.As(err, &se), "got %v", err)
	require.Contains(t, se.Stderr, "Error loading uncompressed kernel")
}

// A machine given its disks after the start has the SCSI controller they may need from
// the start (a restore needs the saved device set), after every other device, once.
func TestArgsHotplugSCSIController(t *testing.T) {
	c := Config{Kernel: file(t, "vmlinuz", "k"), Net: true, RNG: true, HotplugSCSI: true,
		Channel: &Channel{Name: "org.bootlab.frame", Socket: "/run/frame.sock"}}
	require.NoError(t, c.Validate())
	a := strings.Join(c.Args("/run/q.sock", "/run/q.pid"), " ")
	require.Equal(t, 1, strings.Count(a, "virtio-scsi-pci,id=scsi0"))
	require.Greater(t, strings.Index(a, "virtio-scsi-pci,id=scsi0"), strings.Index(a, "virtserialport"), "after every other device")
	require.NotContains(t, a, "virtio-blk-pci")
	c.Disks = []Disk{{Path: file(t, "d.img", "d"), Bus: "scsi-hd"}}
	a = strings.Join(c.Args("/run/q.sock", "/run/q.pid"), " ")
	require.Equal(t, 1, strings.Count(a, "virtio-scsi-pci,id=scsi0"), "one controller for the boot's and the hot-plugged scsi disks")
	none := Config{Kernel: c.Kernel}
	require.NotContains(t, strings.Join(none.Args("/run/q.sock", "/run/q.pid"), " "), "virtio-scsi-pci")
}
