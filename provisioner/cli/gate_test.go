package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
	"github.com/bootlab/bootlab/provisioner/status"
)

func put(t *testing.T, p, s string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
}

// gateMachine: sda is the boot medium (/iso on sda1), sdb a blank internal
// disk, sdc removable, md0 an array; 8 GiB RAM.
func gateMachine(t *testing.T) string {
	sys := t.TempDir()
	for _, d := range []string{"sda", "sdb", "sdc"} {
		put(t, filepath.Join(sys, "block", d, "size"), "268435456\n")
		put(t, filepath.Join(sys, "block", d, "queue/rotational"), "0\n")
	}
	put(t, filepath.Join(sys, "block/sda/sda1/partition"), "1\n")
	put(t, filepath.Join(sys, "block/sdc/removable"), "1\n")
	put(t, filepath.Join(sys, "block/md0/size"), "268435456\n")
	put(t, filepath.Join(sys, "meminfo"), "MemTotal: 8388608 kB\n")
	put(t, filepath.Join(sys, "cmdline"), "quiet\n")
	return sys
}

// gateDetect is this machine's storage detection: sda is found as the boot
// medium, sdc is removable, md0 not a disk; only sdb is examined (blank).
func gateDetect() []fr.Call {
	return []fr.Call{
		{Cmd: "findmnt -n -o SOURCE /iso", Stdout: "/dev/sda1\n"},
		{Cmd: "findmnt -n -o SOURCE /run/archiso/bootmnt", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /nix/.ro-store", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/live/medium", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /findiso", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/findiso", Exit: 1},
		{Cmd: "findmnt -n -o SOURCE /run/live/findiso", Exit: 1},
		{Cmd: "findmnt -nr -t squashfs -o SOURCE", Exit: 1},
		{Cmd: "findmnt -nr -t iso9660 -o SOURCE", Exit: 1},
		{Cmd: "lsblk -npo PKNAME /dev/sda1", Stdout: "/dev/sda\n"},
		{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sda disk 0\n/dev/sdb disk 0\n/dev/sdc disk 1\n/dev/md0 raid1 0\n"},
		{Cmd: "lsblk -rno TYPE /dev/sdb", Stdout: "disk\n"},
		{Cmd: "wipefs -n /dev/sdb"},
	}
}

// runGate runs pre-nixos on the machine whose own sysfs and procfs are
// the tree sys (gateMachine puts cmdline and meminfo there too).
func runGate(t *testing.T, r execpolicy.Runner, env map[string]string, sys string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := PreNixos(context.Background(), args, Env{
		Stdout: &out, Stderr: &errb, Runner: r, Sleep: func(time.Duration) {},
		Getenv:   func(k string) string { return env[k] },
		Exists:   func(p string) bool { return p == "/dev/sda1" },
		Realpath: func(p string) (string, error) { return p, nil },
		SysRoot:  sys, ProcRoot: sys,
	})
	return result{code, out.String(), errb.String()}
}

func planFor(disk string) string {
	p1, p2 := disk+"1", disk+"2"
	if disk == "md0" {
		p1, p2 = "md0p1", "md0p2"
	}
	return `{"partitions":{"` + disk + `":[{"name":"` + p1 + `","type":"efi"},{"name":"` + p2 + `","type":"lvm"}]},` +
		`"vgs":[{"name":"main","devices":["` + p2 + `"]}],"lvs":[{"name":"slash","vg":"main","size":"1G"}]}`
}

// Issue 19 item 2: `plan --plan FILE` with PRE_NIXOS_EXEC=1 naming the boot
// disk, a removable disk or md0 is refused before any command runs (before
// the fix it ran `umount /iso`, `wipefs -a /dev/sda1`, `sgdisk --zap-all`).
func TestPlanFileNamingIneligibleDiskIsRefused(t *testing.T) {
	for _, disk := range []string{"sda", "sdc", "md0"} {
		t.Run(disk, func(t *testing.T) {
			sys, root := gateMachine(t), t.TempDir()
			f := filepath.Join(t.TempDir(), "plan.json")
			put(t, f, planFor(disk))
			r := fr.New(t, gateDetect()...) // any further command fails the test
			res := runGate(t, r, map[string]string{"PRE_NIXOS_EXEC": "1", "PRE_NIXOS_FORCE_CLEANUP": "1"}, sys,
				"--plan", f, "--root", root, "--apply-backend", "native")
			assert.Equal(t, ExitFailure, res.code, res.stderr)
			assert.Contains(t, res.stderr, "/dev/"+disk+", which did not pass this run's data check")
			assert.Contains(t, res.stderr, "eligible: /dev/sdb")
			st := readStorageStatus(t, root)
			assert.Equal(t, status.StateFailed, st.State())
			assert.Contains(t, st["ERROR"], "did not pass this run's data check")
		})
	}
}

// A plan computed for a described machine (`--plan-only --sysfs DIR`, which
// has no boot medium, so it plans sda too) and then applied here with
// `--plan FILE` is refused: this machine's detection finds sda to be the
// boot medium. This machine's own tree does not describe sda1, so the
// refusal comes from detection (findmnt /iso, lsblk PKNAME), not from the
// tree's partition layout.
func TestPlanSysfsNamingBootDiskIsRefused(t *testing.T) {
	described := gateMachine(t)
	planned := run(t, nil, nil, "--plan-only", "--sysfs", described, "--root", t.TempDir())
	require.Equal(t, ExitOK, planned.code, planned.stderr)
	require.Contains(t, planned.stdout, `"sda"`, "a described machine has no boot medium: sda is planned")
	f := filepath.Join(t.TempDir(), "plan.json")
	put(t, f, planned.stdout)

	sys, root := gateMachine(t), t.TempDir()
	require.NoError(t, os.RemoveAll(filepath.Join(sys, "block/sda/sda1")))
	r := fr.New(t, gateDetect()...)
	res := runGate(t, r, map[string]string{"PRE_NIXOS_EXEC": "1", "PRE_NIXOS_FORCE_CLEANUP": "1"}, sys, "--plan", f, "--root", root, "--apply-backend", "native")
	assert.Equal(t, ExitFailure, res.code, res.stderr)
	assert.Contains(t, res.stderr, "/dev/sda, which did not pass this run's data check")
}

// Issue 24 item 1: a described tree never executes. Its cmdline forces and
// its block/ does not describe the boot medium; with PRE_NIXOS_EXEC=1 every
// executing command refuses it before running anything (before the fix a
// forced plan wiped the boot medium: umount /run/findiso, wipefs -a
// /dev/vda1, sgdisk --zap-all /dev/vda). Planning it still works.
func TestDescribedTreeNeverExecutes(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS(machine("qemu-virtio"))))
	put(t, filepath.Join(dir, "cmdline"), "quiet pre-nixos-force-cleanup=1\n")
	env := map[string]string{"PRE_NIXOS_EXEC": "1"}
	for _, args := range [][]string{
		{"--sysfs", dir},
		{"plan", "--sysfs", dir, "--apply-backend", "native"},
		{"--proc", dir},
		{"boot", "--sysfs", dir},
		{"network", "--sysfs", dir},
		{"cleanup", "--sysfs", dir, "/dev/vda"},
	} {
		t.Run(strings.ReplaceAll(strings.Join(args, " "), dir, "DIR"), func(t *testing.T) {
			res := runOn(t, fr.New(t), env, gateMachine(t), gateMachine(t), append(args, "--root", t.TempDir())...)
			assert.Equal(t, ExitUsage, res.code, res.stderr)
			assert.Contains(t, res.stderr, "describe a machine for planning only")
			assert.Empty(t, res.stdout)
		})
	}
	res := runOn(t, fr.New(t), env, gateMachine(t), gateMachine(t), "--plan-only", "--sysfs", dir, "--root", t.TempDir())
	assert.Equal(t, ExitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, `"vda"`)
}

// `pre-nixos cleanup` with PRE_NIXOS_EXEC=1 meets the same gate.
func TestManualCleanupOfBootDiskIsRefused(t *testing.T) {
	sys := gateMachine(t)
	r := fr.New(t, append(gateDetect(),
		fr.Call{Cmd: "lsblk --json --paths --output-all", Stdout: `{"blockdevices":[{"name":"/dev/sda","type":"disk","children":[{"name":"/dev/sda1","type":"part","pkname":"/dev/sda","mountpoints":["/iso"]}]}]}`},
		fr.Call{Cmd: "vgs --reportformat json -o vg_name", Exit: 5},
		fr.Call{Cmd: "pvs --reportformat json -o pv_name,vg_name", Exit: 5},
		fr.Call{Cmd: "lvs --reportformat json -o lv_path,vg_name", Exit: 5},
		fr.Call{Cmd: "losetup --list --json"})...)
	res := runGate(t, r, map[string]string{"PRE_NIXOS_EXEC": "1"}, sys, "cleanup", "--root", t.TempDir(), "/dev/sda")
	assert.Equal(t, ExitFailure, res.code, res.stderr)
	assert.Contains(t, res.stderr, "refused by the disk gate")
	assert.NotContains(t, strings.Join(r.Seen, "\n"), "umount")
}

func readStorageStatus(t *testing.T, root string) status.Status {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "run/pre-nixos", status.StorageFile))
	require.NoError(t, err)
	defer f.Close()
	st, err := status.Parse(f)
	require.NoError(t, err)
	return st
}

// Issue 19 item 8: a manual apply rewrites storage-status, so the login
// notice stops inviting a second (forced) wipe.
func TestManualApplyRewritesStatus(t *testing.T) {
	root := t.TempDir()
	put(t, filepath.Join(root, "run/pre-nixos/storage-status"), "STATE=plan-only\nDETAIL=existing-storage\n")
	r := &fr.Recorder{Replies: map[string]fr.Call{
		"findmnt -n -o SOURCE /iso":                 {Exit: 1},
		"findmnt -n -o SOURCE /run/archiso/bootmnt": {Exit: 1},
		"findmnt -n -o SOURCE /nix/.ro-store":       {Exit: 1},
		"findmnt -n -o SOURCE /run/live/medium":     {Exit: 1},
		"findmnt -n -o SOURCE /findiso":             {Exit: 1},
		"findmnt -n -o SOURCE /run/findiso":         {Exit: 1},
		"findmnt -n -o SOURCE /run/live/findiso":    {Exit: 1},
		"findmnt -nr -t squashfs -o SOURCE":         {Exit: 1},
		"findmnt -nr -t iso9660 -o SOURCE":          {Exit: 1},
		"lsblk -dnpo NAME,TYPE,RM":                  {Stdout: "/dev/sr0 rom 1\n/dev/vda disk 0\n"},
		"lsblk -rno TYPE /dev/vda":                  {Stdout: "disk\n"},
		"lsblk --json --paths --output-all":         {Stdout: `{"blockdevices":[{"name":"/dev/vda","type":"disk"}]}`},
	}}
	var out, errb bytes.Buffer
	code := PreNixos(context.Background(), []string{"--root", root, "--apply-backend", "native"}, Env{
		Stdout: &out, Stderr: &errb, Runner: r, Sleep: func(time.Duration) {}, SysRoot: machine("qemu-virtio"), ProcRoot: machine("qemu-virtio"),
		Getenv: func(k string) string { return map[string]string{"PRE_NIXOS_EXEC": "1"}[k] },
		Exists: func(string) bool { return true }, Realpath: func(p string) (string, error) { return p, nil },
	})
	require.Equal(t, ExitOK, code, errb.String())
	assert.Contains(t, strings.Join(r.Seen, "\n"), "mkfs.ext4 -F -L slash /dev/main/slash")
	st := readStorageStatus(t, root)
	assert.Equal(t, status.Status{"STATE": "applied", "DETAIL": "manual-apply"}, st)
	assert.NotContains(t, status.Notice(st, nil, ""), "FORCE_CLEANUP")
}
