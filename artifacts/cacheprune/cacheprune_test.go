package cacheprune

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// put writes a file of size bytes at root/rel, last modified daysAgo days before now.
func put(t *testing.T, root, rel string, size int, daysAgo float64) string {
	t.Helper()
	p := filepath.Join(root, rel)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, make([]byte, size), 0o644))
	age(t, p, daysAgo)
	return p
}

func age(t *testing.T, p string, daysAgo float64) {
	t.Helper()
	mt := now.Add(-time.Duration(daysAgo * 24 * float64(time.Hour)))
	require.NoError(t, os.Chtimes(p, mt, mt))
}

// cache lays out one entry of every kind, each 1000 bytes, at the given ages.
func cache(t *testing.T) string {
	root := t.TempDir()
	put(t, root, "fixture/iso-aaa/fixture.iso", 1000, 30)
	age(t, filepath.Join(root, "fixture/iso-aaa"), 30)
	put(t, root, "fixture/base-bbb/root.squashfs", 1000, 20)
	age(t, filepath.Join(root, "fixture/base-bbb"), 20)
	put(t, root, "mini/ccc/initrd", 1000, 2)
	age(t, filepath.Join(root, "mini/ccc"), 2)
	put(t, root, "debs/busybox_1_amd64.deb", 1000, 40)
	put(t, root, "kernels/linux-image-x/vmlinuz", 1000, 10)
	age(t, filepath.Join(root, "kernels/linux-image-x"), 10)
	put(t, root, "warm-states/k1.state", 900, 15)
	put(t, root, "warm-states/k1.state.json", 100, 15)
	put(t, root, "direct/debian-live-abc/kernel", 1000, 12)
	age(t, filepath.Join(root, "direct/debian-live-abc"), 12)
	put(t, root, "isos/0123.iso", 1000, 9)
	put(t, root, "keys/id_ed25519", 1000, 400)
	age(t, filepath.Join(root, "keys"), 400)
	put(t, root, "accel-probe.json", 10, 400)
	put(t, root, "netboot-tree/20230607-abc/linux", 0, 3)
	age(t, filepath.Join(root, "netboot-tree/20230607-abc"), 3)
	return root
}

func kinds(es []Entry) map[string]string {
	m := map[string]string{}
	for _, e := range es {
		m[filepath.Base(e.Path)] = e.Kind
	}
	return m
}

func TestScanKindsSizesAndLastUse(t *testing.T) {
	root := cache(t)
	es, err := Scan(root, now)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"iso-aaa": KindFixtureISO, "base-bbb": KindFixtureBase, "ccc": KindMini,
		"busybox_1_amd64.deb": KindDeb, "linux-image-x": KindKernel, "k1.state": KindWarmState,
		"debian-live-abc": KindExtract, "0123.iso": KindDownloadISO, "keys": KindKept, "accel-probe.json": KindKept,
		"20230607-abc": KindNetboot,
	}, kinds(es))
	for _, e := range es {
		if e.Kind == KindWarmState {
			require.Equal(t, int64(1000), e.Size, "the state and its side file")
			require.Len(t, e.Extra, 1)
		}
	}
	// Newest use first: the mini image (2 days) leads, keys (400 days) trail.
	require.Equal(t, "ccc", filepath.Base(es[0].Path))
	require.WithinDuration(t, now.Add(-48*time.Hour), es[0].LastUse, time.Second)
}

func TestPruneHonoursAge(t *testing.T) {
	root := cache(t)
	r, err := Prune(root, Policy{KeepDays: 14}, now)
	require.NoError(t, err)
	// Older than 14 days and prunable: fixture ISO (30), base (20), deb (40), warm state (15).
	require.ElementsMatch(t, []string{"iso-aaa", "base-bbb", "busybox_1_amd64.deb", "k1.state"}, names(r.Removed))
	for _, gone := range []string{"fixture/iso-aaa", "fixture/base-bbb", "debs/busybox_1_amd64.deb", "warm-states/k1.state", "warm-states/k1.state.json"} {
		require.NoFileExists(t, filepath.Join(root, gone))
		require.NoDirExists(t, filepath.Join(root, gone))
	}
	// Keys are old but never pruned; the 10- and 12-day entries stay.
	for _, kept := range []string{"keys/id_ed25519", "accel-probe.json", "kernels/linux-image-x/vmlinuz", "direct/debian-live-abc/kernel", "isos/0123.iso", "mini/ccc/initrd"} {
		require.FileExists(t, filepath.Join(root, kept))
	}
	require.Equal(t, r.Before-4000, r.After)
}

func TestPruneHonoursSizeLeastRecentlyUsedFirst(t *testing.T) {
	root := cache(t)
	// 9010 bytes in all; 1010 of them kept kinds. Down to 5010: the four least recently
	// used prunable entries go (deb 40, iso 30, base 20, state 15 days).
	r, err := Prune(root, Policy{MaxSize: 5010}, now)
	require.NoError(t, err)
	require.Equal(t, []string{"busybox_1_amd64.deb", "iso-aaa", "base-bbb", "k1.state"}, names(r.Removed))
	require.Equal(t, int64(5010), r.After)

	// A dry run removes nothing but says the same.
	root = cache(t)
	r, err = Prune(root, Policy{MaxSize: 5010, DryRun: true}, now)
	require.NoError(t, err)
	require.Len(t, r.Removed, 4)
	require.FileExists(t, filepath.Join(root, "debs/busybox_1_amd64.deb"))
}

// Whatever the policy, an entry in use stays: its builder's lock held, a file of it open,
// used within InUseWindow, or a build in progress.
func TestPruneNeverRemovesAnEntryInUse(t *testing.T) {
	root := cache(t)
	// The fixture ISO's builder holds its lock.
	lock, err := os.OpenFile(filepath.Join(root, "fixture/.iso-aaa.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	// A process (this one) has the downloaded ISO open, as QEMU has the ISO it boots.
	f, err := os.Open(filepath.Join(root, "isos/0123.iso"))
	require.NoError(t, err)
	defer f.Close()
	// The warm state was restored an hour ago.
	age(t, filepath.Join(root, "warm-states/k1.state"), 1.0/24)
	// A base is being built.
	put(t, root, "fixture/.tmp-base-ddd-1/part", 5000, 50)
	age(t, filepath.Join(root, "fixture/.tmp-base-ddd-1"), 50)

	r, err := Prune(root, Policy{KeepDays: 1, MaxSize: 1}, now)
	require.NoError(t, err)
	for _, e := range r.Removed {
		require.Empty(t, e.InUse, "%s removed while in use", e.Path)
	}
	for _, kept := range []string{"fixture/iso-aaa/fixture.iso", "isos/0123.iso", "warm-states/k1.state", "warm-states/k1.state.json", "fixture/.tmp-base-ddd-1/part"} {
		require.FileExists(t, filepath.Join(root, kept), "in use, so kept")
	}
	why := map[string]string{}
	for _, e := range r.Kept {
		why[filepath.Base(e.Path)] = e.InUse
	}
	require.Equal(t, "its builder holds the lock", why["iso-aaa"])
	require.Equal(t, "open in a running process", why["0123.iso"])
	require.Contains(t, why["k1.state"], "used 1h0m0s ago")
	require.Equal(t, "a build in progress", why[".tmp-base-ddd-1"])
	// Everything else prunable went (size bound 1 byte).
	require.ElementsMatch(t, []string{"base-bbb", "busybox_1_amd64.deb", "linux-image-x", "debian-live-abc", "ccc", "20230607-abc"}, names(r.Removed))
}

func TestMissingCacheIsEmpty(t *testing.T) {
	r, err := Prune(filepath.Join(t.TempDir(), "none"), Policy{KeepDays: 1}, now)
	require.NoError(t, err)
	require.Empty(t, r.Removed)
	_, err = Prune(t.TempDir(), Policy{KeepDays: -1}, now)
	require.Error(t, err)
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "8G": 8 << 30, "8GiB": 8 << 30, "1.5M": 3 << 19, "2T": 2 << 40, "10k": 10 << 10, "700MB": 700 << 20} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "G", "-1G", "ten", "8X"} {
		_, err := ParseSize(bad)
		require.Error(t, err, bad)
	}
	require.Equal(t, "8.0 GiB", FormatSize(8<<30))
	require.Equal(t, "512 B", FormatSize(512))
}

func names(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, filepath.Base(e.Path))
	}
	return out
}
