package apply

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/planner"
)

const GiB = planner.GiB

func example2(t *testing.T) *planner.Plan {
	p, _, err := planner.Compute([]inventory.Disk{
		{Name: "nvme0n1", Size: 512 * GiB},
		{Name: "sda", Size: 4000 * GiB, Rotational: true},
		{Name: "sdb", Size: 4000 * GiB, Rotational: true},
	}, planner.Options{RAMGiB: 16})
	require.NoError(t, err)
	return p
}

func example1(t *testing.T) *planner.Plan {
	p, _, err := planner.Compute([]inventory.Disk{{Name: "vda", Size: 128 * GiB}}, planner.Options{RAMGiB: 4})
	require.NoError(t, err)
	return p
}

// cleanDisks is the pre-apply cleanup of blank whole disks (executing).
func cleanDisks(disks ...string) []fr.Call {
	var ls []string
	for _, d := range disks {
		ls = append(ls, `{"name":"`+d+`","type":"disk"}`)
	}
	lsblk := `{"blockdevices":[` + strings.Join(ls, ",") + `]}`
	probes := []fr.Call{
		{Cmd: "lsblk --json --paths --output-all", Stdout: lsblk},
		{Cmd: "vgs --reportformat json -o vg_name", Stdout: `{"report":[{"vg":[]}]}`},
		{Cmd: "pvs --reportformat json -o pv_name,vg_name", Stdout: `{"report":[{"pv":[]}]}`},
		{Cmd: "lvs --reportformat json -o lv_path,vg_name", Stdout: `{"report":[{"lv":[]}]}`},
		{Cmd: "losetup --list --json", Exit: 1},
	}
	out := append([]fr.Call{}, probes...)
	for _, d := range disks {
		out = append(out, fr.Call{Cmd: "wipefs -a " + d})
	}
	out = append(out, probes...)
	for _, d := range disks {
		out = append(out, fr.Ok("sgdisk --zap-all "+d, "blockdev --rereadpt "+d, "partprobe "+d, "udevadm settle", "wipefs -a "+d)...)
	}
	return out
}

func env(t *testing.T, r execpolicy.Runner, exec bool, haveDisko bool) (Env, string) {
	root := t.TempDir()
	return Env{
		Runner: r, Exec: exec, Root: execpolicy.Root{Dir: root},
		LookPath: func(name string) (string, error) {
			if name == "disko" && haveDisko {
				return "/run/current-system/sw/bin/disko", nil
			}
			return "", errors.New("not found")
		},
		Exists:   func(string) bool { return true },
		Sleep:    func(time.Duration) {},
		Getenv:   func(k string) string { return map[string]string{"PRE_NIXOS_NIXPKGS": "/nix/store/abc-nixpkgs"}[k] },
		StateDir: "/run/pre-nixos",
	}, root
}

var nativeExample2 = []string{
	"sgdisk --clear --new=1:0:+1024M --typecode=1:EF00 --change-name=1:disk-nvme0n1-nvme0n1p1 --new=2:0:0 --typecode=2:8E00 --change-name=2:disk-nvme0n1-nvme0n1p2 /dev/nvme0n1",
	"partprobe /dev/nvme0n1",
	"sgdisk --clear --new=1:0:0 --typecode=1:FD00 --change-name=1:disk-sda-sda1 /dev/sda",
	"partprobe /dev/sda",
	"sgdisk --clear --new=1:0:0 --typecode=1:FD00 --change-name=1:disk-sdb-sdb1 /dev/sdb",
	"partprobe /dev/sdb",
	"udevadm settle",
	"mdadm --create /dev/md0 --run --metadata=1.2 --level=1 --raid-devices=2 /dev/sda1 /dev/sdb1",
	"udevadm settle",
	"pvcreate -ff -y /dev/nvme0n1p2",
	"vgcreate main /dev/nvme0n1p2",
	"pvcreate -ff -y /dev/md0",
	"vgcreate swap /dev/md0",
	"lvcreate -y -n slash -L 51200m main",
	"lvcreate -y -n home -L 16384m main",
	"lvcreate -y -n swap -L 32768m swap",
	"lvcreate -y -n var_tmp -L 32768m swap",
	"lvcreate -y -n var_log -L 4096m swap",
	"mkfs.vfat -F 32 -n EFI /dev/nvme0n1p1",
	"mkfs.ext4 -F -L slash /dev/main/slash",
	"mkfs.ext4 -F -L home /dev/main/home",
	"mkswap --label swap /dev/swap/swap",
	"mkfs.ext4 -F -L var_tmp /dev/swap/var_tmp",
	"mkfs.ext4 -F -L var_log /dev/swap/var_log",
	"mount -o relatime /dev/main/slash /mnt",
	"mkdir -p /mnt/boot",
	"mount -o umask=0077 /dev/nvme0n1p1 /mnt/boot",
	"mkdir -p /mnt/home",
	"mount -o relatime /dev/main/home /mnt/home",
	"mkdir -p /mnt/var/log",
	"mount -o relatime /dev/swap/var_log /mnt/var/log",
	"mkdir -p /mnt/var/tmp",
	"mount -o relatime /dev/swap/var_tmp /mnt/var/tmp",
	"swapon /dev/swap/swap",
	"chmod 1777 /mnt/var/tmp",
}

func TestNativeExactSequence(t *testing.T) {
	calls := append(cleanDisks("/dev/nvme0n1", "/dev/sda", "/dev/sdb"), fr.Ok(nativeExample2...)...)
	r := fr.New(t, calls...)
	e, root := env(t, r, true, false)
	res, err := Apply(context.Background(), e, example2(t), Auto)
	require.NoError(t, err)
	assert.Equal(t, Native, res.Backend)
	assert.Equal(t, nativeExample2, res.Commands[len(res.Commands)-len(nativeExample2):])
	cfg, err := os.ReadFile(filepath.Join(root, "var/log/pre-nixos/disko-config.nix"))
	require.NoError(t, err)
	assert.Contains(t, string(cfg), "builtins.fromJSON")
	rec, err := os.ReadFile(filepath.Join(root, "run/pre-nixos/storage-plan.json"))
	require.NoError(t, err)
	back, err := planner.Load(strings.NewReader(string(rec)))
	require.NoError(t, err, "recorded plan must load back")
	assert.Equal(t, example2(t).LVs, back.LVs)
	assert.Contains(t, string(rec), `"mountpointPermissions": 0`)
}

// Device nodes appear late on real virtio disks; apply waits with udevadm
// settle and fails clearly when they never show up.
func TestNativeWaitsForPartitionNodes(t *testing.T) {
	seq := []string{
		"sgdisk --clear --new=1:0:+1024M --typecode=1:EF00 --change-name=1:disk-vda-vda1 --new=2:0:0 --typecode=2:8E00 --change-name=2:disk-vda-vda2 /dev/vda",
		"partprobe /dev/vda",
		"udevadm settle", "udevadm settle", "udevadm settle",
		"pvcreate -ff -y /dev/vda2",
	}
	calls := append(cleanDisks("/dev/vda"), fr.Ok(seq...)...)
	r := fr.New(t, calls...)
	e, _ := env(t, r, true, false)
	polls := 0
	e.Exists = func(p string) bool {
		if p == "/dev/vda2" {
			polls++
			return polls >= 3
		}
		return true
	}
	// Stop after pvcreate by failing it; what matters is the waiting.
	r2 := failAfter{inner: r, fail: "pvcreate -ff -y /dev/vda2"}
	e.Runner = r2
	_, err := Apply(context.Background(), e, example1(t), Native)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "creating physical volumes for main")
	assert.Equal(t, 3, polls)

	calls = append(cleanDisks("/dev/vda"), fr.Ok(seq[:2]...)...)
	for i := 0; i < 6; i++ {
		calls = append(calls, fr.Call{Cmd: "udevadm settle"})
	}
	e, _ = env(t, fr.New(t, calls...), true, false)
	e.NodeWait = time.Second
	e.Exists = func(p string) bool { return p != "/dev/vda1" }
	_, err = Apply(context.Background(), e, example1(t), Native)
	assert.ErrorContains(t, err, "device nodes did not appear within 1s: /dev/vda1")
}

type failAfter struct {
	inner execpolicy.Runner
	fail  string
}

func (f failAfter) Run(ctx context.Context, c execpolicy.Cmd) (execpolicy.Result, error) {
	res, err := f.inner.Run(ctx, c)
	if c.String() == f.fail {
		res.ExitCode = 5
	}
	return res, err
}

// Without PRE_NIXOS_EXEC nothing runs: no cleanup, no commands reach the
// machine, but the config file is written and the command list is complete.
func TestDryRunNative(t *testing.T) {
	r := fr.New(t)
	e, root := env(t, execpolicy.Policy{Exec: false, Inner: r}, false, false)
	res, err := Apply(context.Background(), e, example2(t), Native)
	require.NoError(t, err)
	want := append([]string{}, nativeExample2...)
	// no udevadm waits in a dry run
	want = append(want[:6], want[7:]...)
	want = append(want[:7], want[8:]...)
	assert.Equal(t, want, res.Commands)
	assert.FileExists(t, filepath.Join(root, "var/log/pre-nixos/disko-config.nix"))
	assert.NoFileExists(t, filepath.Join(root, "run/pre-nixos/storage-plan.json"))
}

func TestDiskoBackend(t *testing.T) {
	cfgPath := func(root string) string { return filepath.Join(root, "var/log/pre-nixos/disko-config.nix") }
	t.Run("legacy mode dry run", func(t *testing.T) {
		r := fr.New(t, fr.Call{Cmd: "disko --help", Stdout: "Usage: disko [options] disk-config.nix\n--mode create|mount|disko"})
		e, root := env(t, execpolicy.Policy{Inner: r}, false, true)
		res, err := Apply(context.Background(), e, example2(t), Auto)
		require.NoError(t, err)
		assert.Equal(t, Disko, res.Backend)
		assert.Equal(t, []string{"disko --mode disko --root-mountpoint /mnt " + cfgPath(root), "chmod 1777 /mnt/var/tmp"}, res.Commands)
	})
	t.Run("combined mode, NIX_PATH injected", func(t *testing.T) {
		root := t.TempDir()
		disko := "disko --mode destroy,format,mount --yes-wipe-all-disks --root-mountpoint /mnt " + cfgPath(root)
		calls := append(cleanDisks("/dev/vda"), fr.Call{Cmd: "disko --help", Stdout: "--mode destroy,format,mount\n--yes-wipe-all-disks"}, fr.Call{Cmd: disko})
		r := fr.New(t, calls...)
		e, _ := env(t, r, true, true)
		e.Root = execpolicy.Root{Dir: root}
		res, err := Apply(context.Background(), e, example1(t), Disko)
		require.NoError(t, err)
		assert.Equal(t, disko, res.Commands[len(res.Commands)-1])
		assert.Equal(t, []string{"NIX_PATH=nixpkgs=/nix/store/abc-nixpkgs"}, r.Envs[len(r.Envs)-1])
	})
	t.Run("failure cleans, refreshes and retries once", func(t *testing.T) {
		root := t.TempDir()
		disko := "disko --mode disko --root-mountpoint /mnt " + cfgPath(root)
		calls := cleanDisks("/dev/vda")
		calls = append(calls, fr.Call{Cmd: "disko --help", Stdout: "--mode disko"}, fr.Call{Cmd: disko, Exit: 1})
		calls = append(calls, cleanDisks("/dev/vda")...)
		calls = append(calls, fr.Ok("blockdev --rereadpt /dev/vda", "partprobe /dev/vda", "udevadm settle", disko)...)
		e, _ := env(t, fr.New(t, calls...), true, true)
		e.Root = execpolicy.Root{Dir: root}
		res, err := Apply(context.Background(), e, example1(t), Disko)
		require.NoError(t, err)
		tail := res.Commands[len(res.Commands)-3:]
		assert.Equal(t, []string{"blockdev --rereadpt /dev/vda", "partprobe /dev/vda", "udevadm settle"}, tail)
		assert.Equal(t, 1, strings.Count(strings.Join(res.Commands, "\n"), "disko --mode"), "the retried disko is not listed twice")
	})
	t.Run("second failure is fatal", func(t *testing.T) {
		root := t.TempDir()
		disko := "disko --mode disko --root-mountpoint /mnt " + cfgPath(root)
		calls := cleanDisks("/dev/vda")
		calls = append(calls, fr.Call{Cmd: "disko --help"}, fr.Call{Cmd: disko, Exit: 1})
		calls = append(calls, cleanDisks("/dev/vda")...)
		calls = append(calls, fr.Ok("blockdev --rereadpt /dev/vda", "partprobe /dev/vda", "udevadm settle")...)
		calls = append(calls, fr.Call{Cmd: disko, Exit: 1, Stderr: "error: infinite recursion"})
		e, _ := env(t, fr.New(t, calls...), true, true)
		e.Root = execpolicy.Root{Dir: root}
		_, err := Apply(context.Background(), e, example1(t), Disko)
		assert.ErrorContains(t, err, "disko failed twice")
		assert.ErrorContains(t, err, "infinite recursion")
	})
}

func TestChoose(t *testing.T) {
	none := func(string) (string, error) { return "", errors.New("no") }
	some := func(string) (string, error) { return "/bin/disko", nil }
	got, err := Choose(Auto, none)
	require.NoError(t, err)
	assert.Equal(t, Native, got)
	got, _ = Choose(Auto, some)
	assert.Equal(t, Disko, got)
	got, _ = Choose(Native, some)
	assert.Equal(t, Native, got)
	_, err = Choose("parted", some)
	assert.ErrorContains(t, err, "unknown apply backend")
}

// In the Python pre-nixos a missing disko was a silent skip followed by a
// failing chmod. Asking for disko without it is now a clear error.
func TestExplicitDiskoMissing(t *testing.T) {
	e, _ := env(t, nil, true, false)
	e.Runner = skipCleanup{execpolicy.Policy{Exec: true, Inner: execpolicy.OS{LookPath: func(string) (string, error) { return "", errors.New("no") }}}}
	_, err := Apply(context.Background(), e, example1(t), Disko)
	require.Error(t, err)
	assert.ErrorIs(t, err, execpolicy.ErrNotFound)
	assert.ErrorContains(t, err, "disko: executable not found")
}

// skipCleanup answers the cleanup probes as "nothing there" so the test
// reaches the disko call without real block devices.
type skipCleanup struct{ inner execpolicy.Runner }

func (s skipCleanup) Run(ctx context.Context, c execpolicy.Cmd) (execpolicy.Result, error) {
	switch c.Name {
	case "lsblk":
		return execpolicy.Result{Stdout: []byte(`{"blockdevices":[]}`)}, nil
	case "disko":
		return s.inner.Run(ctx, c)
	}
	return execpolicy.Result{}, nil
}
