package boot

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/apply"
	"github.com/bootlab/bootlab/provisioner/console/consoletest"
	"github.com/bootlab/bootlab/provisioner/detect"
	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
	"github.com/bootlab/bootlab/provisioner/logging"
	"github.com/bootlab/bootlab/provisioner/status"
)

type machine struct {
	sys, proc, root, consoles string
	// tty is the machine's console; img a regular file the active file
	// also names (a console line must never land in it).
	tty    *consoletest.TTY
	img    string
	stdout bytes.Buffer
	logs   bytes.Buffer
}

func write(t *testing.T, p, s string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
}

// newMachine: one blank 128 GiB virtio disk, one NIC with carrier, 4 GiB RAM.
func newMachine(t *testing.T, cmdline string, withNIC bool) *machine {
	m := &machine{sys: t.TempDir(), proc: t.TempDir(), root: t.TempDir(), consoles: t.TempDir()}
	write(t, filepath.Join(m.sys, "block/vda/size"), "268435456")
	write(t, filepath.Join(m.sys, "block/vda/queue/rotational"), "1")
	write(t, filepath.Join(m.sys, "block/sr0/size"), "100")
	if withNIC {
		write(t, filepath.Join(m.sys, "class/net/ens3/carrier"), "1")
		write(t, filepath.Join(m.sys, "class/net/ens3/address"), "52:54:00:12:34:56")
		require.NoError(t, os.MkdirAll(filepath.Join(m.sys, "class/net/ens3/device"), 0o755))
	} else {
		require.NoError(t, os.MkdirAll(filepath.Join(m.sys, "class/net/lo"), 0o755))
	}
	write(t, filepath.Join(m.proc, "meminfo"), "MemTotal: 4028880 kB\n")
	write(t, filepath.Join(m.proc, "cmdline"), cmdline)
	write(t, filepath.Join(m.root, "etc/pre-nixos/root_key.pub"), "ssh-ed25519 AAAA test\n")
	m.tty = consoletest.New(t)
	m.img = filepath.Join(m.consoles, "disk.img")
	write(t, m.img, "data")
	write(t, filepath.Join(m.consoles, "active"), m.img+" "+m.tty.Path+"\n")
	return m
}

func (m *machine) config(t *testing.T, r execpolicy.Runner, env map[string]string) Config {
	log := logging.New(&m.logs, slog.LevelDebug)
	return Config{
		Root: execpolicy.Root{Dir: m.root}, SysfsRoot: m.sys, ProcRoot: m.proc, StateDir: "/run/pre-nixos",
		Exec: true, Runner: r, Log: log, Stdout: &m.stdout,
		Getenv:     func(k string) string { return env[k] },
		Backend:    apply.Native,
		ActivePath: filepath.Join(m.consoles, "active"),
		Version:    "0.1.0",
		Detect: detect.Deps{Runner: r, Exists: func(string) bool { return false },
			Realpath: func(p string) (string, error) { return p, nil },
			Cmdline:  func() (string, error) { b, err := os.ReadFile(filepath.Join(m.proc, "cmdline")); return string(b), err }},
		Apply: apply.Env{Exists: func(string) bool { return true }, Sleep: func(time.Duration) {},
			LookPath: func(string) (string, error) { return "", os.ErrNotExist }},
		Network: networkTimings(),
	}
}

func (m *machine) status(t *testing.T, name string) status.Status {
	t.Helper()
	f, err := os.Open(filepath.Join(m.root, "run/pre-nixos", name))
	require.NoError(t, err)
	defer f.Close()
	st, err := status.Parse(f)
	require.NoError(t, err)
	return st
}

func detectBlank(rc int, stdout string) []fr.Call {
	c := []fr.Call{
		{Cmd: "findmnt -n -o SOURCE /iso", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/archiso/bootmnt", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /nix/.ro-store", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/live/medium", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /findiso", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/findiso", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/live/findiso", Exit: 1},
		{Cmd: "findmnt -nr -t squashfs -o SOURCE", Exit: 1},
		{Cmd: "findmnt -nr -t iso9660 -o SOURCE", Exit: 1},
		{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sr0 rom 1\n/dev/vda disk 0\n", Exit: rc},
	}
	if rc != 0 {
		return c
	}
	return append(c, fr.Call{Cmd: "lsblk -rno TYPE /dev/vda", Stdout: stdout}, fr.Call{Cmd: "wipefs -n /dev/vda"})
}

func cleanVDA() []fr.Call {
	probes := []fr.Call{
		{Cmd: "lsblk --json --paths --output-all", Stdout: `{"blockdevices":[{"name":"/dev/vda","type":"disk"}]}`},
		{Cmd: "vgs --reportformat json -o vg_name", Exit: 5},
		{Cmd: "pvs --reportformat json -o pv_name,vg_name", Exit: 5},
		{Cmd: "lvs --reportformat json -o lv_path,vg_name", Exit: 5},
		{Cmd: "losetup --list --json"},
	}
	out := append(append([]fr.Call{}, probes...), fr.Call{Cmd: "wipefs -a /dev/vda"})
	out = append(out, probes...)
	return append(out, fr.Ok("sgdisk --zap-all /dev/vda", "blockdev --rereadpt /dev/vda", "partprobe /dev/vda", "udevadm settle", "wipefs -a /dev/vda")...)
}

var nativeVDA = []string{
	"sgdisk --clear --new=1:0:+1024M --typecode=1:EF00 --change-name=1:disk-vda-vda1 --new=2:0:0 --typecode=2:8E00 --change-name=2:disk-vda-vda2 /dev/vda",
	"partprobe /dev/vda",
	"udevadm settle",
	"pvcreate -ff -y /dev/vda2",
	"vgcreate main /dev/vda2",
	"lvcreate -y -n slash -L 51200m main",
	"lvcreate -y -n home -L 16384m main",
	"lvcreate -y -n swap -L 8192m main",
	"mkfs.vfat -F 32 -n EFI /dev/vda1",
	"mkfs.ext4 -F -L slash /dev/main/slash",
	"mkfs.ext4 -F -L home /dev/main/home",
	"mkswap --label swap /dev/main/swap",
	"mount -o relatime /dev/main/slash /mnt",
	"mkdir -p /mnt/boot",
	"mount -o umask=0077 /dev/vda1 /mnt/boot",
	"mkdir -p /mnt/home",
	"mount -o relatime /dev/main/home /mnt/home",
	"swapon /dev/main/swap",
}

func networkCalls() []fr.Call {
	return append(fr.Ok("ip link set ens3 up", "ip link set ens3 down", "ip link set ens3 name lan", "ip link set lan up", "systemctl restart systemd-networkd"),
		fr.Call{Cmd: "ip -j -4 addr show lan", Stdout: `[{"addr_info":[{"family":"inet","local":"10.0.2.15"}]}]`},
		fr.Call{Cmd: "systemctl reload-or-restart --no-block sshd", Exit: 5},
		fr.Call{Cmd: "systemctl reload-or-restart --no-block ssh"})
}

func seq(parts ...[]fr.Call) []fr.Call {
	var out []fr.Call
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestBlankDiskIsProvisioned(t *testing.T) {
	m := newMachine(t, "console=ttyS0", true)
	r := fr.New(t, seq(detectBlank(0, "disk\n"), cleanVDA(), fr.Ok(nativeVDA...), networkCalls())...)
	out, err := Run(context.Background(), m.config(t, r, nil))
	require.NoError(t, err)
	st := m.status(t, "storage-status")
	assert.Equal(t, status.Status{"STATE": "applied", "DETAIL": "auto-applied", "BACKEND": "native"}, st)
	assert.Equal(t, "10.0.2.15", m.status(t, "network-status").LANIPv4())
	assert.Equal(t, "10.0.2.15", out.IPv4)
	tty := m.tty.WaitFor(t, "LAN IPv4 address: 10.0.2.15\r\n")
	assert.Contains(t, tty, "LAN IPv4 address: 10.0.2.15\r\n")
	assert.Contains(t, tty, "pre-nixos boot image version 0.1.0\r\n")
	// Issue 24 item 8: the active file also names a regular file; the
	// banner goes to character devices only.
	img, err := os.ReadFile(m.img)
	require.NoError(t, err)
	assert.Equal(t, "data", string(img), "the banner is never written to a file (or disk) named by the active file")
	assert.Contains(t, m.stdout.String(), "LAN IPv4 address: 10.0.2.15\n")
	assert.FileExists(t, filepath.Join(m.root, "var/log/pre-nixos/disko-config.nix"))
	assert.FileExists(t, filepath.Join(m.root, "run/pre-nixos/storage-plan.json"))
	ak, _ := os.ReadFile(filepath.Join(m.root, "root/.ssh/authorized_keys"))
	assert.Equal(t, "ssh-ed25519 AAAA test\n", string(ak))
}

func TestExistingStorageIsPlanOnly(t *testing.T) {
	m := newMachine(t, "", true)
	r := fr.New(t, seq(detectBlank(0, "disk\npart\n"), networkCalls())...)
	_, err := Run(context.Background(), m.config(t, r, nil))
	require.NoError(t, err)
	assert.Equal(t, status.Status{"STATE": "plan-only", "DETAIL": "existing-storage"}, m.status(t, "storage-status"))
	assert.FileExists(t, filepath.Join(m.root, "var/log/pre-nixos/disko-config.nix"))
}

func TestDetectionErrorIsPlanOnly(t *testing.T) {
	m := newMachine(t, "", true)
	r := fr.New(t, seq(detectBlank(1, ""), networkCalls())...)
	_, err := Run(context.Background(), m.config(t, r, nil))
	require.NoError(t, err)
	assert.Equal(t, status.Status{"STATE": "plan-only", "DETAIL": "detection-error"}, m.status(t, "storage-status"))
}

func TestForcedCleanupThenApply(t *testing.T) {
	m := newMachine(t, "quiet pre-nixos-force-cleanup=1", true)
	r := fr.New(t, seq(detectBlank(0, "disk\npart\n"), cleanVDA(), cleanVDA(), fr.Ok(nativeVDA...), networkCalls())...)
	_, err := Run(context.Background(), m.config(t, r, nil))
	require.NoError(t, err)
	assert.Equal(t, status.Status{"STATE": "applied", "DETAIL": "existing-storage-force-cleanup", "BACKEND": "native"}, m.status(t, "storage-status"))
}

func TestForcedCleanupUnknownActionFails(t *testing.T) {
	m := newMachine(t, "", true)
	r := fr.New(t, seq(detectBlank(0, "disk\npart\n"), networkCalls())...)
	_, err := Run(context.Background(), m.config(t, r, map[string]string{"PRE_NIXOS_FORCE_CLEANUP": "1", "PRE_NIXOS_FORCE_CLEANUP_ACTION": "q"}))
	require.Error(t, err)
	st := m.status(t, "storage-status")
	assert.Equal(t, "failed", st.State())
	assert.Contains(t, st["ERROR"], `unknown cleanup action "q"`)
}

// No NIC: storage is still provisioned and recorded, sshd still hardened,
// and the run fails so the unit shows it.
func TestNoNIC(t *testing.T) {
	m := newMachine(t, "", false)
	r := fr.New(t, seq(detectBlank(0, "disk\n"), cleanVDA(), fr.Ok(nativeVDA...), fr.Ok("systemctl reload-or-restart --no-block sshd"))...)
	_, err := Run(context.Background(), m.config(t, r, nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no network interface")
	assert.Equal(t, "applied", m.status(t, "storage-status").State())
	assert.NoFileExists(t, filepath.Join(m.root, "run/pre-nixos/network-status"))
}

// A dry run (PRE_NIXOS_EXEC unset) probes but changes nothing and says so.
func TestDryRun(t *testing.T) {
	m := newMachine(t, "", true)
	inner := fr.New(t, detectBlank(0, "disk\n")...)
	c := m.config(t, nil, nil)
	policy := execpolicy.Policy{Inner: inner, Log: c.Log}
	c.Runner, c.Detect.Runner, c.Exec = policy, policy, false
	_, err := Run(context.Background(), c)
	require.NoError(t, err)
	assert.Equal(t, status.Status{"STATE": "plan-only", "DETAIL": "execution-disabled"}, m.status(t, "storage-status"))
	time.Sleep(50 * time.Millisecond) // a write, had there been one, arrives by now
	assert.Empty(t, m.tty.Output(), "no console writes in a dry run")
	assert.True(t, strings.Contains(m.logs.String(), `"event":"pre_nixos.command.skip"`))
}

// Issue 24 item 7: the last kernel parameter counts, and an explicit "no"
// in either source cancels the other's "yes".
func TestForced(t *testing.T) {
	proc := t.TempDir()
	env := func(v string) func(string) string { return func(string) string { return v } }
	for _, tc := range []struct {
		cmdline, env string
		want         bool
	}{
		{"a pre-nixos-force-cleanup=10 b", "", false},
		{"a pre-nixos-force-cleanup=10 b", "yes", false},
		{"quiet", "yes", true},
		{"quiet", "0", false},
		{"a pre-nixos-force-cleanup=1\n", "", true},
		{"pre-nixos-force-cleanup=1 quiet pre-nixos-force-cleanup=0", "", false},
		{"pre-nixos-force-cleanup=0 quiet pre-nixos-force-cleanup=1", "", true},
		{"pre-nixos-force-cleanup=1", "0", false},
		{"pre-nixos-force-cleanup=0", "1", false},
		{"pre-nixos-force-cleanup=1", "1", true},
		{"pre-nixos-force-cleanup=1 pre-nixos-force-cleanup", "", false},
	} {
		write(t, filepath.Join(proc, "cmdline"), tc.cmdline)
		assert.Equal(t, tc.want, Forced(env(tc.env), proc), "cmdline %q env %q", tc.cmdline, tc.env)
	}
}

// Issue 19 item 3: only explicit true values force; a typo never destroys data.
func TestForcedOnlyExplicitTrue(t *testing.T) {
	proc := t.TempDir()
	write(t, filepath.Join(proc, "cmdline"), "quiet\n")
	for _, v := range []string{"1", "true", "TRUE", "yes", "Yes", "on", " on "} {
		assert.True(t, Forced(func(string) string { return v }, proc), "%q forces", v)
	}
	for _, v := range []string{"", "0", "nope", "N", "disabled", "2", "y", "enable", "false", "off"} {
		var logs strings.Builder
		log := slog.New(slog.NewJSONHandler(&logs, nil))
		assert.False(t, ForcedLog(func(string) string { return v }, proc, log), "%q must not force", v)
		if strings.TrimSpace(v) != "" {
			assert.Contains(t, logs.String(), "pre_nixos.boot.force_not_set", "%q is logged as not forcing", v)
		}
	}
	none := func(string) string { return "" }
	for _, arg := range []string{"pre-nixos-force-cleanup=nope", "pre-nixos-force-cleanup=N", "pre-nixos-force-cleanup=", "pre-nixos-force-cleanup"} {
		write(t, filepath.Join(proc, "cmdline"), "a "+arg+" b\n")
		assert.False(t, Forced(none, proc), "kernel arg %q must not force", arg)
	}
	for _, arg := range []string{"pre-nixos-force-cleanup=true", "pre-nixos-force-cleanup=YES", "pre-nixos-force-cleanup=on"} {
		write(t, filepath.Join(proc, "cmdline"), "a "+arg+" b\n")
		assert.True(t, Forced(none, proc), "kernel arg %q forces", arg)
	}
}

// Issue 19 item 1: a disk in sysfs that storage detection never examined
// (missing from lsblk: enumerated late) is never planned or touched. Before
// the fix vdb was planned (RAID1 with vda) and wiped without force.
func TestUnexaminedDiskIsNeverApplied(t *testing.T) {
	m := newMachine(t, "console=ttyS0", true)
	write(t, filepath.Join(m.sys, "block/vdb/size"), "268435456")
	write(t, filepath.Join(m.sys, "block/vdb/queue/rotational"), "1")
	r := fr.New(t, seq(detectBlank(0, "disk\n"), cleanVDA(), fr.Ok(nativeVDA...), networkCalls())...)
	_, err := Run(context.Background(), m.config(t, r, nil))
	require.NoError(t, err)
	assert.Equal(t, status.Status{"STATE": "applied", "DETAIL": "auto-applied", "BACKEND": "native"}, m.status(t, "storage-status"))
	assert.NotContains(t, strings.Join(r.Seen, "\n"), "vdb")
	assert.Contains(t, m.logs.String(), "not examined by storage detection")
}

// The probe of vdb exits 32 and its node is gone ("vanished"): vdb is not
// a candidate, so it is neither planned nor touched.
func TestVanishedDiskIsNeverApplied(t *testing.T) {
	m := newMachine(t, "console=ttyS0", true)
	write(t, filepath.Join(m.sys, "block/vdb/size"), "268435456")
	write(t, filepath.Join(m.sys, "block/vdb/queue/rotational"), "1")
	det := detectBlank(0, "disk\n")
	det[9].Stdout = "/dev/sr0 rom 1\n/dev/vda disk 0\n/dev/vdb disk 0\n"
	det = append(det, fr.Call{Cmd: "lsblk -rno TYPE /dev/vdb", Exit: 32})
	r := fr.New(t, seq(det, cleanVDA(), fr.Ok(nativeVDA...), networkCalls())...)
	_, err := Run(context.Background(), m.config(t, r, nil))
	require.NoError(t, err)
	assert.Equal(t, "applied", m.status(t, "storage-status").State())
	assert.NotContains(t, strings.Join(r.Seen[13:], "\n"), "vdb", "nothing after detection names vdb")
}

// An unreadable inventory says so instead of DETAIL=auto-applied.
func TestUnreadableInventoryStatus(t *testing.T) {
	m := newMachine(t, "", true)
	require.NoError(t, os.RemoveAll(filepath.Join(m.sys, "block")))
	c := m.config(t, nil, nil)
	c.Detect.Runner = fr.New(t, seq(detectBlank(0, "disk\n")[:9], []fr.Call{{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sr0 rom 1\n"}})...)
	c.Runner = fr.New(t, networkCalls()...)
	_, err := Run(context.Background(), c)
	require.Error(t, err)
	st := m.status(t, "storage-status")
	assert.Equal(t, "failed", st.State())
	assert.Equal(t, "inventory-error", st.Detail())
	assert.Contains(t, st["ERROR"], "reading disk inventory")
}

// hookRunner calls hook before passing each command on.
type hookRunner struct {
	inner execpolicy.Runner
	hook  func(c execpolicy.Cmd)
}

func (h hookRunner) Run(ctx context.Context, c execpolicy.Cmd) (execpolicy.Result, error) {
	h.hook(c)
	return h.inner.Run(ctx, c)
}

// Issue 19 item 8: storage-status says in-progress before the first disk
// command, and a panic mid-apply ends as STATE=failed with the reason while
// network and sshd still run.
func TestStatusInProgressThenPanicRecovered(t *testing.T) {
	m := newMachine(t, "console=ttyS0", true)
	inner := fr.New(t, seq(detectBlank(0, "disk\n"), cleanVDA(), fr.Ok(nativeVDA[:3]...), networkCalls())...)
	var during status.Status
	r := hookRunner{inner: inner, hook: func(c execpolicy.Cmd) {
		if c.String() == "wipefs -a /dev/vda" && during == nil {
			during = m.status(t, "storage-status")
		}
		if c.Name == "pvcreate" {
			panic("simulated crash in pvcreate")
		}
	}}
	_, err := Run(context.Background(), m.config(t, r, nil))
	require.Error(t, err)
	assert.Equal(t, status.Status{"STATE": "in-progress", "DETAIL": "started"}, during)
	st := m.status(t, "storage-status")
	assert.Equal(t, "failed", st.State())
	assert.Equal(t, "auto-applied", st.Detail())
	assert.Contains(t, st["ERROR"], "simulated crash in pvcreate")
	assert.Equal(t, "10.0.2.15", m.status(t, "network-status").LANIPv4(), "network still configured")
}

// The run-time Gated wrapper of boot's defaults: with Exec, every command
// the flow issues passes the gate, whoever issues it. Before the gate is
// armed no storage command reaches the machine; afterwards only those on
// eligible disks do.
func TestBootRunnerIsGated(t *testing.T) {
	m := newMachine(t, "", true)
	r := fr.New(t, fr.Call{Cmd: "wipefs -a /dev/vda"})
	c := m.config(t, r, nil)
	c.defaults()
	_, err := c.Runner.Run(context.Background(), execpolicy.C("wipefs", "-a", "/dev/vda"))
	require.ErrorIs(t, err, execpolicy.ErrRefused, "an unarmed gate refuses every storage command")
	c.Gate.Allow([]string{"/dev/vda"})
	_, err = c.Runner.Run(context.Background(), execpolicy.C("wipefs", "-a", "/dev/sr0"))
	require.ErrorIs(t, err, execpolicy.ErrRefused)
	_, err = c.Runner.Run(context.Background(), execpolicy.C("wipefs", "-a", "/dev/vda"))
	require.NoError(t, err)
	assert.Equal(t, []string{"wipefs -a /dev/vda"}, r.Seen)
}

// Issue 24 item 4 on the boot flow: vda was examined blank; by the
// pre-apply cleanup it holds a mounted partition (hot plug, a slow
// controller). Nothing is torn down and the status says why.
func TestBootDiskWithDataSinceDetectionIsNotTornDown(t *testing.T) {
	m := newMachine(t, "", true)
	graph := []fr.Call{
		{Cmd: "lsblk --json --paths --output-all", Stdout: `{"blockdevices":[{"name":"/dev/vda","type":"disk","pttype":"gpt","children":[{"name":"/dev/vda1","type":"part","pkname":"/dev/vda","fstype":"ext4","mountpoints":["/media/photos"]}]}]}`},
		{Cmd: "vgs --reportformat json -o vg_name", Exit: 5},
		{Cmd: "pvs --reportformat json -o pv_name,vg_name", Exit: 5},
		{Cmd: "lvs --reportformat json -o lv_path,vg_name", Exit: 5},
		{Cmd: "losetup --list --json"},
	}
	r := fr.New(t, seq(detectBlank(0, "disk\n"), graph, networkCalls())...)
	_, err := Run(context.Background(), m.config(t, r, nil))
	require.Error(t, err)
	st := m.status(t, "storage-status")
	assert.Equal(t, "failed", st.State())
	assert.Contains(t, st["ERROR"], "/dev/vda was examined blank and now holds a gpt partition table")
	assert.NotContains(t, strings.Join(r.Seen, "\n"), "umount")
}
