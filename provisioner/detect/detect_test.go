package detect

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
	"github.com/bootlab/bootlab/provisioner/logging"
)

// noBoot is the probe sequence when nothing names a boot medium.
func noBoot() []fr.Call {
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

func deps(t *testing.T, cmdline string, exists []string, links map[string]string, calls ...fr.Call) (Deps, *bytes.Buffer) {
	var logs bytes.Buffer
	ex := map[string]bool{}
	for _, e := range exists {
		ex[e] = true
	}
	return Deps{
		Runner: fr.New(t, calls...),
		Exists: func(p string) bool { return ex[p] },
		Realpath: func(p string) (string, error) {
			if r, ok := links[p]; ok {
				return r, nil
			}
			return p, nil
		},
		Cmdline: func() (string, error) { return cmdline, nil },
		Log:     logging.New(&logs, slog.LevelDebug),
	}, &logs
}

func seq(parts ...[]fr.Call) []fr.Call {
	var out []fr.Call
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestDetect(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		cmdline  string
		exists   []string
		links    map[string]string
		calls    []fr.Call
		want     []Device
		wantBoot string
		wantErr  string
	}{
		{
			name: "partitions only",
			calls: seq(noBoot(), []fr.Call{
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sda disk 0\n"},
				{Cmd: "lsblk -rno TYPE /dev/sda", Stdout: "disk\npart\n"},
				{Cmd: "wipefs -n /dev/sda"},
			}),
			want: []Device{{"/dev/sda", []string{"partitions"}}},
		},
		{
			name: "signatures only",
			calls: seq(noBoot(), []fr.Call{
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/vdb disk 0\n"},
				{Cmd: "lsblk -rno TYPE /dev/vdb", Stdout: "disk\n"},
				{Cmd: "wipefs -n /dev/vdb", Stdout: "DEVICE OFFSET TYPE\nvdb 0x1000 linux_raid_member\n"},
			}),
			want: []Device{{"/dev/vdb", []string{"signatures"}}},
		},
		{
			name: "both reasons ordered, blank disk ignored, sorted candidates",
			calls: seq(noBoot(), []fr.Call{
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/vdc disk 0\n/dev/vdb disk 0\n/dev/vda1 part 0\n"},
				{Cmd: "lsblk -rno TYPE /dev/vdb"}, {Cmd: "wipefs -n /dev/vdb"},
				{Cmd: "lsblk -rno TYPE /dev/vdc", Stdout: "disk\npart\n"},
				{Cmd: "wipefs -n /dev/vdc", Stdout: "vdc 0x200 gpt\n"},
			}),
			want: []Device{{"/dev/vdc", []string{"partitions", "signatures"}}},
		},
		{
			// Python pre-nixos bug: lsblk -p prints PKNAME as /dev/sda and it
			// looked up /dev//dev/sda, never excluding the boot disk.
			name:     "boot disk via boot=LABEL= with full-path PKNAME",
			cmdline:  "BOOT_IMAGE=/boot/vmlinuz boot=LABEL=NIXOS_ISO quiet",
			exists:   []string{"/dev/disk/by-label/NIXOS_ISO"},
			links:    map[string]string{"/dev/disk/by-label/NIXOS_ISO": "/dev/sda1"},
			wantBoot: "/dev/sda",
			calls: seq([]fr.Call{{Cmd: "lsblk -npo PKNAME /dev/sda1", Stdout: "/dev/sda\n"}}, noBoot(), []fr.Call{
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sda disk 0\n"},
			}),
		},
		{
			name:     "boot disk via boot=UUID= with bare PKNAME",
			cmdline:  "boot=UUID=1234-ABCD",
			exists:   []string{"/dev/disk/by-uuid/1234-ABCD"},
			links:    map[string]string{"/dev/disk/by-uuid/1234-ABCD": "/dev/vdb2"},
			wantBoot: "/dev/vdb",
			calls: seq([]fr.Call{{Cmd: "lsblk -npo PKNAME /dev/vdb2", Stdout: "vdb\n"}}, noBoot(), []fr.Call{
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/vdb disk 0\n/dev/vda disk 0\n"},
				{Cmd: "lsblk -rno TYPE /dev/vda"}, {Cmd: "wipefs -n /dev/vda"},
			}),
		},
		{
			name:     "ISO label with escaped space resolves to whole disk",
			exists:   []string{"/dev/disk/by-label/NIXOS MINIMAL"},
			links:    map[string]string{"/dev/disk/by-label/NIXOS MINIMAL": "/dev/sdc1"},
			wantBoot: "/dev/sdc",
			calls: []fr.Call{
				{Cmd: "findmnt -n -o SOURCE /iso", Stdout: `LABEL=NIXOS\040MINIMAL` + "\n"},
				{Cmd: "findmnt -n -o SOURCE /run/archiso/bootmnt", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /nix/.ro-store", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /run/live/medium", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /findiso", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /run/findiso", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /run/live/findiso", Exit: 1},
				{Cmd: "findmnt -nr -t squashfs -o SOURCE", Stdout: "/dev/loop0\n"},
				{Cmd: "findmnt -nr -t iso9660 -o SOURCE", Exit: 1},
				{Cmd: "lsblk -npo PKNAME /dev/sdc1", Stdout: "/dev/sdc\n"},
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sdc disk 0\n/dev/loop0 loop 0\n"},
			},
		},
		{
			name:     "Debian live medium on a CD",
			exists:   []string{"/dev/sr0"},
			wantBoot: "/dev/sr0",
			calls: []fr.Call{
				{Cmd: "findmnt -n -o SOURCE /iso", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /run/archiso/bootmnt", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /nix/.ro-store", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /run/live/medium", Stdout: "/dev/sr0\n"},
				{Cmd: "findmnt -n -o SOURCE /findiso", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /run/findiso", Exit: 1},
				{Cmd: "findmnt -n -o SOURCE /run/live/findiso", Exit: 1},
				{Cmd: "findmnt -nr -t squashfs -o SOURCE", Stdout: "/dev/loop0\n"},
				{Cmd: "findmnt -nr -t iso9660 -o SOURCE", Stdout: "/dev/sr0\n"},
				{Cmd: "lsblk -npo PKNAME /dev/sr0", Stdout: "\n"},
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sr0 rom 1\n/dev/vda disk 0\n"},
				{Cmd: "lsblk -rno TYPE /dev/vda"}, {Cmd: "wipefs -n /dev/vda"},
			},
		},
		{
			name: "removable and ignored prefixes skipped without probing",
			calls: seq(noBoot(), []fr.Call{
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/fd0 disk 1\n/dev/sdb disk 1\n/dev/zram0 disk 0\n/dev/nbd0 disk 0\n/dev/md127 disk 0\n"},
			}),
		},
		{
			name:   "vanished device (rc 32) is skipped",
			exists: []string{},
			calls: seq(noBoot(), []fr.Call{
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sdb disk 0\n"},
				{Cmd: "lsblk -rno TYPE /dev/sdb", Exit: 32},
			}),
		},
		{
			name:   "rc 32 on a device that still exists is an error",
			exists: []string{"/dev/sdb"},
			calls: seq(noBoot(), []fr.Call{
				{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/sdb disk 0\n"},
				{Cmd: "lsblk -rno TYPE /dev/sdb"},
				{Cmd: "wipefs -n /dev/sdb", Exit: 32, Stderr: "wipefs: error"},
			}),
			wantErr: "wipefs -n /dev/sdb exited 32",
		},
		{
			name:    "failing lsblk listing",
			calls:   seq(noBoot(), []fr.Call{{Cmd: "lsblk -dnpo NAME,TYPE,RM", Exit: 1, Stderr: "lsblk: boom"}}),
			wantErr: "listing disks",
		},
		{
			name:    "garbage lsblk output",
			calls:   seq(noBoot(), []fr.Call{{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "{\"blockdevices\": disk\n"}}),
			wantErr: "unexpected lsblk line",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := deps(t, tc.cmdline, tc.exists, tc.links, tc.calls...)
			res, err := Detect(ctx, d)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrDetection)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, res.Devices)
			assert.Equal(t, tc.wantBoot, res.BootDisk)
		})
	}
}

func TestLogsBootAndFilter(t *testing.T) {
	d, logs := deps(t, "", nil, nil, seq(noBoot(), []fr.Call{{Cmd: "lsblk -dnpo NAME,TYPE,RM", Stdout: "/dev/fd0 disk 1\n"}})...)
	_, err := Detect(context.Background(), d)
	require.NoError(t, err)
	assert.Contains(t, logs.String(), `"event":"pre_nixos.storage.resolve_boot_disk"`)
	assert.Contains(t, logs.String(), `"reasons":["ignored_prefix","removable_media"]`)
}

func TestCandidatesAndReasons(t *testing.T) {
	assert.Equal(t, []string{`/dev/disk/by-label/A\040B`, "/dev/disk/by-label/A B", `/dev/disk/by-label/A\x20B`}, candidates(`LABEL=A\040B`))
	assert.Equal(t, []string{"/dev/sr0"}, candidates("sr0"))
	assert.Equal(t, []string{"/dev/disk/by-partuuid/x"}, candidates("PARTUUID=x"))
	assert.Equal(t, "partitions, signatures", FormatReasons([]string{"partitions", "signatures"}))
	assert.Equal(t, "unknown", FormatReasons(nil))
}

// notInstalled is findmnt's probe sequence in a baseline without util-linux.
func notInstalled(name string, cmds ...string) []fr.Call {
	var out []fr.Call
	for _, c := range cmds {
		out = append(out, fr.Call{Cmd: c, Exit: 127, Err: fmt.Errorf("%s: %w", name, execpolicy.ErrNotFound)})
	}
	return out
}

func noFindmnt() []fr.Call {
	var cmds []string
	for _, c := range noBoot() {
		cmds = append(cmds, c.Cmd)
	}
	return notInstalled("findmnt", cmds...)
}

// Without findmnt (busybox baselines such as the Debian installer) the boot medium is
// still looked for, in the kernel's mount table: a missing tool must not read as "no
// boot medium", or a plan could include the disk the machine booted from.
func TestBootMediumFromMountinfoWithoutFindmnt(t *testing.T) {
	ctx := context.Background()
	calls := seq(noFindmnt(), notInstalled("lsblk", "lsblk -npo PKNAME /dev/vdc"))
	d, logs := deps(t, "", []string{"/dev/vdc"}, nil, calls...)
	d.Mountinfo = func() ([]byte, error) {
		return []byte("22 1 0:21 / /proc rw,nosuid - proc proc rw\n" +
			"31 22 254:32 / /run/live/medium ro,relatime shared:9 - iso9660 /dev/vdc ro\n"), nil
	}
	disks, _ := ResolveBootDisks(ctx, d)
	require.Equal(t, []string{"/dev/vdc"}, disks)
	require.Contains(t, logs.String(), "pre_nixos.storage.boot_medium_from_mountinfo")

	// The installer: its root is the initramfs, no medium is mounted, and mountinfo
	// says so.
	d, logs = deps(t, "", nil, nil, noFindmnt()...)
	d.Mountinfo = func() ([]byte, error) { return []byte("20 1 0:2 / / rw - rootfs rootfs rw\n"), nil }
	disks, _ = ResolveBootDisks(ctx, d)
	require.Empty(t, disks)
	require.Contains(t, logs.String(), `"sources":null`)

	// With findmnt installed, mountinfo is not read.
	d, _ = deps(t, "", nil, nil, noBoot()...)
	d.Mountinfo = func() ([]byte, error) { t.Fatal("mountinfo read although findmnt answered"); return nil, nil }
	disks, _ = ResolveBootDisks(ctx, d)
	require.Empty(t, disks)
}

func TestUnescapeMount(t *testing.T) {
	require.Equal(t, "/run/my medium", unescapeMount(`/run/my\040medium`))
	require.Equal(t, `a\b`, unescapeMount(`a\134b`))
}

// Detection for an apply has no fallback: without lsblk it fails naming the command,
// never reporting "no existing storage" from facts it could not gather.
func TestScanWithoutLsblkNamesIt(t *testing.T) {
	d, _ := deps(t, "", nil, nil, notInstalled("lsblk", "lsblk -dnpo NAME,TYPE,RM")...)
	devs, cands, err := Scan(context.Background(), d)
	require.ErrorIs(t, err, ErrDetection)
	require.ErrorContains(t, err, "lsblk: executable not found")
	require.Empty(t, devs)
	require.Empty(t, cands)
}
