package execpolicy

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type countRunner struct{ n int }

func (c *countRunner) Run(context.Context, Cmd) (Result, error) { c.n++; return Result{}, nil }

func testGate() *Gate {
	g := NewGate(func(dev string) ([]string, bool) {
		switch dev {
		case "/dev/sdb1", "/dev/sdb":
			return []string{"/dev/sdb"}, true
		case "/dev/sda1":
			return []string{"/dev/sda"}, true
		case "/dev/md127":
			return []string{"/dev/sdb", "/dev/sdc"}, true
		}
		return nil, false
	})
	g.Allow([]string{"/dev/sdb"})
	g.Learn("vg:main", []string{"/dev/sdb"})
	g.Learn("vg:data", []string{"/dev/sdb", "/dev/sdc"})
	g.Learn("mount:/target", []string{"/dev/sdb"})
	return g
}

func TestGateAllows(t *testing.T) {
	g := testGate()
	for _, c := range []Cmd{
		C("wipefs", "-a", "/dev/sdb"), C("wipefs", "-a", "/dev/sdb1"), C("sgdisk", "--zap-all", "/dev/sdb"),
		C("vgcreate", "main", "/dev/sdb1"), C("vgremove", "-ff", "-y", "main"), C("lvcreate", "-y", "-n", "slash", "-L", "10m", "main"),
		C("mkfs.ext4", "-F", "-L", "slash", "/dev/main/slash"), C("mkswap", "--label", "swap", "/dev/mapper/main-swap"),
		C("mount", "-o", "relatime", "/dev/main/slash", "/mnt"), C("mkdir", "-p", "/mnt/boot"), C("chmod", "1777", "/mnt/var/tmp"),
		C("umount", "/target"), C("dd", "if=/dev/zero", "of=/dev/sdb1"),
		C("ip", "link", "set", "lan", "up"), C("systemctl", "restart", "x"), C("udevadm", "settle"),
		P("lsblk", "/dev/sda"),
	} {
		assert.NoError(t, g.Check(c), "%s", c)
	}
}

func TestGateRefuses(t *testing.T) {
	g := testGate()
	for _, c := range []Cmd{
		C("wipefs", "-a", "/dev/sda1"),                // boot medium partition
		C("sgdisk", "--zap-all", "/dev/sdc"),          // unknown disk
		C("mdadm", "--stop", "--force", "/dev/md127"), // spans sdc
		C("vgremove", "-ff", "-y", "data"),            // VG spans sdc
		C("vgchange", "-an", "other"),                 // unknown VG
		C("umount", "/iso"),                           // unknown mountpoint
		C("mount", "/dev/sdb1", "/etc"),               // outside /mnt
		C("mkdir", "-p", "/mnt/../etc"),               // escapes /mnt
		C("chmod", "1777", "/tmp"),                    // outside /mnt
		C("sh", "-c", "true"),                         // never a shell
		C("disko", "--mode", "disko", "x.nix"),        // no plan disks learned
		C("wipefs", "-a"),                             // names nothing
		C("dd", "if=/dev/zero", "of=/dev/sda"),        // of= a non-eligible disk
		C("lvremove", "-fy", "/dev/data/big"),         // LV of a spanning VG
	} {
		err := g.Check(c)
		assert.ErrorIs(t, err, ErrRefused, "%s", c)
	}
	unarmed := NewGate(nil)
	assert.ErrorContains(t, unarmed.Check(C("wipefs", "-a", "/dev/sdb")), "no disk has passed")
	assert.NoError(t, unarmed.Check(C("ip", "link")), "non-storage commands are not gated")
}

func TestGatedRunnerNeverReachesInner(t *testing.T) {
	inner := &countRunner{}
	r := Gated{Gate: testGate(), Inner: inner}
	_, err := r.Run(context.Background(), C("wipefs", "-a", "/dev/sda1"))
	require.ErrorIs(t, err, ErrRefused)
	assert.Equal(t, 0, inner.n)
	_, err = r.Run(context.Background(), C("wipefs", "-a", "/dev/sdb"))
	require.NoError(t, err)
	assert.Equal(t, 1, inner.n)
	require.Error(t, testGate().CheckAll([]Cmd{C("wipefs", "-a", "/dev/sdb"), C("wipefs", "-a", "/dev/sda1")}))
}

func TestVGOf(t *testing.T) {
	for in, want := range map[string]string{"/dev/main/slash": "main", "/dev/mapper/main-slash": "main", "/dev/mapper/my--vg-lv--x": "my-vg", "/dev/sda": "", "/dev/disk/by-id/x": "", "/dev/mapper/novg": ""} {
		assert.Equal(t, want, vgOf(in), in)
	}
}
