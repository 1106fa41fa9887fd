package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/console/consoletest"
	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/planner"
	"github.com/bootlab/bootlab/provisioner/planner/plantest"
)

var update = flag.Bool("update", false, "rewrite golden files")

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, r execpolicy.Runner, env map[string]string, args ...string) result {
	t.Helper()
	// This machine's own trees are empty unless a test says otherwise: no
	// test reads the host's /sys or /proc.
	return runOn(t, r, env, t.TempDir(), t.TempDir(), args...)
}

// runOn runs pre-nixos on a machine whose own sysfs and procfs are sys and
// proc (what an executing run reads for its safety decisions).
func runOn(t *testing.T, r execpolicy.Runner, env map[string]string, sys, proc string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	if r == nil {
		r = fr.New(t) // any command at all fails the test
	}
	code := PreNixos(context.Background(), args, Env{
		Stdout: &out, Stderr: &errb, Runner: r, Sleep: func(time.Duration) {},
		Getenv: func(k string) string { return env[k] }, SysRoot: sys, ProcRoot: proc,
	})
	return result{code, out.String(), errb.String()}
}

func noBootCalls() []fr.Call {
	return []fr.Call{
		{Cmd: "findmnt -n -o SOURCE /iso", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/archiso/bootmnt", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /nix/.ro-store", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/live/medium", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /findiso", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/findiso", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/live/findiso", Exit: 1},
		{Cmd: "findmnt -nr -t squashfs -o SOURCE", Exit: 1},
		{Cmd: "findmnt -nr -t iso9660 -o SOURCE", Exit: 1},
	}
}

func machine(name string) string { return filepath.Join("testdata", "machines", name) }

// Every described machine (1 to 16 disks of mixed kinds) plans without
// touching the machine, and the plan satisfies the invariants.
func TestPlanOnlyDescribedMachines(t *testing.T) {
	for _, name := range []string{"one-nvme", "qemu-virtio", "ssd-plus-hdd-pair", "hdd-buckets-only", "sixteen-mixed"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			res := run(t, nil, nil, "--plan-only", "--output", "plan", "--sysfs", machine(name), "--root", root)
			require.Equal(t, 0, res.code, res.stderr)
			p, err := planner.Load(strings.NewReader(res.stdout))
			require.NoError(t, err)
			disks, _, err := inventory.Scan(machine(name), "")
			require.NoError(t, err)
			plantest.CheckInvariants(t, disks, p)
			assert.FileExists(t, filepath.Join(root, "var/log/pre-nixos/actions.log"), "logs go under --root")
		})
	}
}

func TestSixteenDisksExcludesNonTargets(t *testing.T) {
	res := run(t, nil, nil, "--plan-only", "--sysfs", machine("sixteen-mixed"), "--root", t.TempDir())
	require.Equal(t, 0, res.code, res.stderr)
	p, err := planner.Load(strings.NewReader(res.stdout))
	require.NoError(t, err)
	assert.Len(t, p.Partitions, 16)
	for _, dp := range p.Partitions {
		assert.NotContains(t, []string{"sdm", "loop0", "sr0", "zram0"}, dp.Disk)
	}
}

func TestDiskoOutputGolden(t *testing.T) {
	res := run(t, nil, nil, "--plan-only", "--output", "disko", "--sysfs", machine("ssd-plus-hdd-pair"), "--root", t.TempDir())
	require.Equal(t, 0, res.code, res.stderr)
	path := filepath.Join("testdata", "ssd-plus-hdd-pair.disko.nix")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(res.stdout), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), res.stdout)
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"1 MiB disk", []string{"--plan-only", "--sysfs", machine("tiny-disk")}, 1, "no usable disks: vda: too small (1 MiB"},
		{"no disks", []string{"--plan-only", "--sysfs", machine("no-disks")}, 1, "no usable disks: the inventory is empty"},
		{"unreadable sysfs", []string{"--plan-only", "--sysfs", "testdata/machines/does-not-exist"}, 1, "reading disk inventory"},
		{"bad mode", []string{"--plan-only", "--mode", "turbo"}, 2, `invalid --mode "turbo"`},
		{"bad output", []string{"--plan-only", "--output", "yaml"}, 2, `invalid --output "yaml"`},
		{"bad backend", []string{"--plan-only", "--apply-backend", "parted"}, 2, "unknown apply backend"},
		{"unknown flag", []string{"--frobnicate"}, 2, "flag provided but not defined"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"stray argument", []string{"plan", "extra"}, 2, "unexpected arguments"},
		{"unknown cleanup action", []string{"cleanup", "--action", "q", "/dev/vdb"}, 2, `unknown cleanup action "q"`},
		{"cleanup without devices", []string{"cleanup"}, 2, "name at least one device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := run(t, nil, nil, append(tc.args, "--root", t.TempDir())...)
			assert.Equal(t, tc.code, res.code)
			assert.Contains(t, res.stderr, tc.msg)
			assert.Empty(t, res.stdout)
		})
	}
	t.Run("malformed plan file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "plan.json")
		require.NoError(t, os.WriteFile(f, []byte(`{"vgs":[{"name":"main","devices":["sda9"]}]`), 0o644))
		res := run(t, nil, nil, "--plan", f, "--plan-only", "--root", t.TempDir())
		assert.Equal(t, 1, res.code)
		assert.Contains(t, res.stderr, "decoding plan JSON")
	})
	t.Run("malformed lsblk JSON in cleanup", func(t *testing.T) {
		r := fr.New(t, append(noBootCalls(),
			fr.Call{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/vda disk 0\n"},
			fr.Call{Cmd: "lsblk -rno TYPE /dev/vda", Stdout: "disk\n"},
			fr.Call{Cmd: "wipefs -n /dev/vda"},
			fr.Call{Cmd: "lsblk --json --paths --output-all", Stdout: `{"blockdevices":[{`})...)
		res := runOn(t, r, map[string]string{"PRE_NIXOS_EXEC": "1"}, machine("qemu-virtio"), machine("qemu-virtio"), "cleanup", "--root", t.TempDir(), "/dev/vda")
		assert.Equal(t, 1, res.code)
		assert.Contains(t, res.stderr, "parsing output of lsblk --json --paths --output-all")
	})
	t.Run("no NIC", func(t *testing.T) {
		sys := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(sys, "class/net/lo"), 0o755))
		res := run(t, nil, nil, "network", "--sysfs", sys, "--root", t.TempDir())
		assert.Equal(t, 1, res.code)
		assert.Contains(t, res.stderr, "no network interface with a link")
	})
}

// Without PRE_NIXOS_EXEC, applying prints what would run and runs nothing.
func TestDryRunApply(t *testing.T) {
	root := t.TempDir()
	res := run(t, nil, nil, "--sysfs", machine("qemu-virtio"), "--root", root, "--apply-backend", "native")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stderr, "the native backend would run:")
	assert.Contains(t, res.stderr, "  sgdisk --clear --new=1:0:+1024M --typecode=1:EF00 --change-name=1:disk-vda-vda1")
	assert.Contains(t, res.stderr, "  mount -o relatime /dev/main/slash /mnt")
	assert.FileExists(t, filepath.Join(root, "var/log/pre-nixos/disko-config.nix"))
}

// With PRE_NIXOS_EXEC=1 and existing storage, nothing is touched unless
// forced.
func TestRefusesExistingStorage(t *testing.T) {
	proc := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(proc, "cmdline"), []byte("quiet"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal: 2097152 kB\n"), 0o644))
	// The boot medium is looked for twice: to plan, then to arm the gate.
	r := fr.New(t, append(append(noBootCalls(), noBootCalls()...),
		fr.Call{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/vda disk 0\n"},
		fr.Call{Cmd: "lsblk -rno TYPE /dev/vda", Stdout: "disk\npart\n"},
		fr.Call{Cmd: "wipefs -n /dev/vda", Stdout: "vda 0x200 gpt\n"},
	)...)
	res := runOn(t, r, map[string]string{"PRE_NIXOS_EXEC": "1"}, machine("qemu-virtio"), proc, "--root", t.TempDir())
	assert.Equal(t, ExitRefusing, res.code)
	assert.Contains(t, res.stderr, "/dev/vda (partitions, signatures)")
	assert.Contains(t, res.stderr, "PRE_NIXOS_FORCE_CLEANUP=1")
}

func TestVersionAndHelp(t *testing.T) {
	res := run(t, nil, nil, "version")
	assert.Equal(t, 0, res.code)
	assert.Equal(t, Version+"\n", res.stdout)
	res = run(t, nil, nil, "plan", "-h")
	assert.Equal(t, 0, res.code)
	assert.Contains(t, res.stderr, "-plan-only")
}

func TestConsoleCommand(t *testing.T) {
	dir := t.TempDir()
	tty := consoletest.New(t)
	active := filepath.Join(dir, "active")
	require.NoError(t, os.WriteFile(active, []byte(tty.Path+"\n"), 0o644))
	var stderr bytes.Buffer
	code := Console(context.Background(), []string{"broadcast", "LAN", "IPv4", "address:", "10.0.2.15", "--active-path", active}, Env{Stderr: &stderr})
	assert.Equal(t, 0, code, stderr.String())
	assert.Equal(t, "LAN IPv4 address: 10.0.2.15\r\n", tty.WaitFor(t, "\r\n"))

	assert.Equal(t, 2, Console(context.Background(), nil, Env{Stderr: &stderr}))
	assert.Equal(t, 2, Console(context.Background(), []string{"broadcast"}, Env{Stderr: &stderr}))
	assert.Equal(t, 2, Console(context.Background(), []string{"broadcast", "x", "--timeout", "soon"}, Env{Stderr: &stderr}))
}

// Issue 24 item 8: pre-nixos-console writes only to character devices; a
// regular file (or a disk) named by the active file is left alone.
func TestConsoleCommandWritesOnlyCharDevices(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(img, []byte("data"), 0o644))
	tty := consoletest.New(t)
	active := filepath.Join(dir, "active")
	require.NoError(t, os.WriteFile(active, []byte(img+" "+tty.Path+"\n"), 0o644))
	var stderr bytes.Buffer
	code := Console(context.Background(), []string{"broadcast", "hello", "--active-path", active}, Env{Stderr: &stderr})
	assert.Equal(t, 0, code, stderr.String())
	assert.Equal(t, "hello\r\n", tty.WaitFor(t, "\r\n"))
	got, err := os.ReadFile(img)
	require.NoError(t, err)
	assert.Equal(t, "data", string(got))

}

// One execution policy for every side effect (the Python pre-nixos wrote
// files whatever PRE_NIXOS_EXEC said) and one state-directory rule (it
// honoured PRE_NIXOS_STATE_DIR for some files only): a dry-run boot under --root runs only
// read-only probes and writes only below --root, in $PRE_NIXOS_STATE_DIR.
func TestDryRunBootTouchesOnlyRoot(t *testing.T) {
	root := t.TempDir()
	sys := t.TempDir()
	require.NoError(t, os.CopyFS(sys, os.DirFS(machine("qemu-virtio"))))
	require.NoError(t, os.MkdirAll(filepath.Join(sys, "class/net/ens3/device"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(sys, "class/net/ens3/carrier"), []byte("1\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(sys, "cmdline"), []byte("quiet\n"), 0o644))
	r := fr.New(t,
		fr.Call{Cmd: "findmnt -n -o SOURCE /iso", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/archiso/bootmnt", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /nix/.ro-store", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/live/medium", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /findiso", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/findiso", Exit: 1},
		fr.Call{Cmd: "findmnt -n -o SOURCE /run/live/findiso", Exit: 1},
		fr.Call{Cmd: "findmnt -nr -t squashfs -o SOURCE", Exit: 1},
		fr.Call{Cmd: "findmnt -nr -t iso9660 -o SOURCE", Exit: 1},
		fr.Call{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/vda disk 0\n"},
		fr.Call{Cmd: "lsblk -rno TYPE /dev/vda", Stdout: "disk\n"},
		fr.Call{Cmd: "wipefs -n /dev/vda"},
	)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc/pre-nixos"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/pre-nixos/root_key.pub"), []byte("ssh-ed25519 AAAA k\n"), 0o644))
	res := run(t, r, map[string]string{"PRE_NIXOS_STATE_DIR": "/custom/state"}, "boot", "--sysfs", sys, "--root", root)
	require.Equal(t, 0, res.code, res.stderr)
	st, err := os.ReadFile(filepath.Join(root, "custom/state/storage-status"))
	require.NoError(t, err)
	assert.Equal(t, "STATE=plan-only\nDETAIL=execution-disabled\n", string(st))
	for _, p := range []string{"etc/systemd/network/10-lan.link", "etc/systemd/network/20-lan.network", "etc/ssh/sshd_config", "var/log/pre-nixos/disko-config.nix", "var/log/pre-nixos/actions.log"} {
		assert.FileExists(t, filepath.Join(root, p))
	}
	assert.Contains(t, res.stderr, `"event":"pre_nixos.command.skip","command":"ip link set ens3 down"`)
	assert.Contains(t, res.stderr, `"command":"systemctl reload-or-restart --no-block sshd"`)
}

func TestNoticeCommand(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "run/pre-nixos"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "run/pre-nixos/storage-status"), []byte("STATE=applied\nDETAIL=auto-applied\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "run/pre-nixos/network-status"), []byte("LAN_IPV4=10.0.2.15\n"), 0o644))
	res := run(t, nil, nil, "notice", "--root", root)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "pre-nixos: Storage provisioning completed automatically.\nLAN IPv4 address: 10.0.2.15\n", res.stdout)
	assert.Empty(t, res.stderr)
	assert.NoFileExists(t, filepath.Join(root, "var/log/pre-nixos/actions.log"))
}
