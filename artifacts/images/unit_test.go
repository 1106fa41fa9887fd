package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readCpio parses a newc archive into name -> (mode, uid, gid, data).
type cpioMember struct {
	mode, uid, gid uint64
	data           []byte
}

func readCpio(t *testing.T, b []byte) map[string]cpioMember {
	t.Helper()
	out := map[string]cpioMember{}
	off := 0
	field := func(i int) uint64 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("bad cpio header at %d: %v", off, err)
		}
		return v
	}
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad cpio magic at %d: %q", off, b[off:off+6])
		}
		mode, uid, gid, size, namesize := field(1), field(2), field(3), field(6), field(11)
		name := string(b[off+110 : off+110+int(namesize)-1])
		p := off + 110 + int(namesize)
		p = (p + 3) &^ 3
		data := b[p : p+int(size)]
		off = (p + int(size) + 3) &^ 3
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = cpioMember{mode, uid, gid, data}
	}
}

func TestCpioRoundTripKeepsSetuidRootOwnership(t *testing.T) {
	tree := cpioTree{}
	tree.file("bin/busybox", os.ModeSetuid|0o755, []byte("binary"))
	tree.symlink("bin/su", "/bin/busybox")
	tree.chardev("dev/console", 0o600, 5, 1)
	tree.file("etc/odd", 0o644, []byte("abc")) // length not a multiple of 4
	var buf bytes.Buffer
	if err := writeCpio(&buf, tree); err != nil {
		t.Fatal(err)
	}
	got := readCpio(t, buf.Bytes())
	bb := got["bin/busybox"]
	if bb.mode != 0o104755 || bb.uid != 0 || bb.gid != 0 || string(bb.data) != "binary" {
		t.Errorf("bin/busybox: mode %o uid %d gid %d data %q; want 104755 root:root", bb.mode, bb.uid, bb.gid, bb.data)
	}
	if su := got["bin/su"]; su.mode != 0o120777 || string(su.data) != "/bin/busybox" {
		t.Errorf("bin/su: mode %o target %q", su.mode, su.data)
	}
	if c := got["dev/console"]; c.mode != 0o020600 {
		t.Errorf("dev/console mode %o, want 020600", c.mode)
	}
	if string(got["etc/odd"].data) != "abc" {
		t.Errorf("etc/odd = %q", got["etc/odd"].data)
	}
	for _, d := range []string{"bin", "dev", "etc"} {
		if got[d].mode != 0o040755 {
			t.Errorf("implied directory %s: mode %o", d, got[d].mode)
		}
	}
	var again bytes.Buffer
	if err := writeCpio(&again, tree); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("writing the same tree twice gave different archives")
	}
}

// TestMiniInitramfsContents checks the built image, not just the writer: setuid root
// busybox (su needs it), shadow readable by root only, the spec knobs landing in place.
func TestMiniInitramfsContents(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	spec := MiniSpec{Version: "v7", AutoLogin: true, Init: "#!/bin/sh\nexec sleep 1000\n",
		Files: map[string]File{"/usr/bin/sudo": {Content: "#!/bin/sh\necho fake\n", Mode: 0o755}, "/etc/x": {Content: "x"}}}
	m, err := testCache().BuildMini(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(m.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	got := readCpio(t, b)
	check := func(name string, mode uint64, content string) {
		t.Helper()
		e, ok := got[name]
		if !ok {
			t.Errorf("%s missing from the initramfs", name)
			return
		}
		if e.mode != mode || e.uid != 0 || e.gid != 0 {
			t.Errorf("%s: mode %o owner %d:%d, want %o root:root", name, e.mode, e.uid, e.gid, mode)
		}
		if content != "" && !strings.Contains(string(e.data), content) {
			t.Errorf("%s does not contain %q: %q", name, content, e.data)
		}
	}
	check("bin/busybox", 0o104755, "")
	check("etc/shadow", 0o100600, "root:$6$")
	check("etc/mini-version", 0o100644, "v7")
	check("init", 0o100755, "exec sleep 1000")
	check("usr/bin/sudo", 0o100755, "echo fake")
	check("etc/x", 0o100644, "x")
	check("etc/inittab", 0o100644, "getty -n -l /bin/autologin")
	check("etc/rc.mini", 0o100755, "hostname mini")
	if su := got["bin/su"]; string(su.data) != "/bin/busybox" {
		t.Errorf("bin/su -> %q, want /bin/busybox", su.data)
	}
	if h := got["home/user"]; h.uid != 1000 || h.gid != 1000 {
		t.Errorf("home/user owned by %d:%d, want 1000:1000", h.uid, h.gid)
	}
	order := string(got["lib/modules/mini/order"].data)
	if !strings.Contains(order, "virtio_net.ko") || !strings.Contains(order, "virtio_blk.ko") {
		t.Errorf("module order lacks virtio_net/virtio_blk: %q", order)
	}
	if strings.Index(order, "failover.ko") > strings.Index(order, "virtio_net.ko") {
		t.Errorf("failover must load before virtio_net: %q", order)
	}
}

func TestMiniCacheKeyAndWarmCall(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	a, err := testCache().BuildMini(ctx, MiniSpec{Version: "key-a"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a2, err := testCache().BuildMini(ctx, MiniSpec{Version: "key-a"})
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)
	if a2.Hash != a.Hash || a2.Initrd != a.Initrd {
		t.Errorf("same spec, different image: %s vs %s", a.Hash, a2.Hash)
	}
	// Milliseconds: no apt-cache call, no rebuild. Generous bound for a loaded machine.
	if warm > 500*time.Millisecond {
		t.Errorf("warm BuildMini took %v", warm)
	}
	t.Logf("warm BuildMini: %v", warm)
	b, err := testCache().BuildMini(ctx, MiniSpec{Version: "key-b"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Hash == a.Hash || b.Initrd == a.Initrd {
		t.Error("different Version, same cache entry")
	}
	c, err := testCache().BuildMini(ctx, MiniSpec{Version: "key-a", Files: map[string]File{"/etc/x": {Content: "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash == a.Hash {
		t.Error("extra file did not change the cache key")
	}
	for _, m := range []*Mini{a, b, c} {
		if _, err := os.Stat(m.Kernel); err != nil {
			t.Errorf("kernel missing: %v", err)
		}
		if filepath.Dir(m.Kernel) != m.Dir || m.KernelVersion == "" {
			t.Errorf("inconsistent Mini: %+v", m)
		}
	}
}

func TestConcurrentBuildersShareOneBuild(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	spec := MiniSpec{Version: "concurrent-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	type res struct {
		m   *Mini
		err error
	}
	ch := make(chan res, 3)
	for range 3 {
		go func() { m, err := testCache().BuildMini(ctx, spec); ch <- res{m, err} }()
	}
	var hashes []string
	for range 3 {
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		hashes = append(hashes, r.m.Hash)
	}
	if hashes[0] != hashes[1] || hashes[1] != hashes[2] {
		t.Errorf("concurrent builders disagree: %v", hashes)
	}
	m, _ := testCache().BuildMini(ctx, spec)
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(m.Dir), ".tmp-"+filepath.Base(m.Dir)+"-*"))
	if len(left) != 0 {
		t.Errorf("temporary build directories left behind: %v", left)
	}
	t.Cleanup(func() { os.RemoveAll(m.Dir) })
}

func TestMissingToolNamesPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := testCache().BuildMini(context.Background(), MiniSpec{})
	if err == nil || !strings.Contains(err.Error(), "apt-get install busybox-static") {
		t.Fatalf("want an error naming busybox-static, got %v", err)
	}
	if err := needTools("dpkg-deb", "cpio"); err == nil || !strings.Contains(err.Error(), "dpkg cpio") {
		t.Fatalf("want an error naming dpkg and cpio, got %v", err)
	}
}

func TestEmptyCacheIsRefused(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "config.Config.Cache") {
			t.Fatalf("an empty Cache must panic naming what to pass, got %v", r)
		}
	}()
	_ = Cache("").Dir()
}

// testCache is the cache these tests build into: the one bootlab would use
// ($BOOTLAB_CACHE, else the user's cache directory), so a test run reuses the images
// another run built; read here, at the test's edge, because the package reads no
// environment of bootlab's.
func testCache() Cache {
	if d := os.Getenv("BOOTLAB_CACHE"); d != "" {
		return Cache(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return Cache(filepath.Join(os.TempDir(), "bootlab-cache"))
	}
	return Cache(filepath.Join(d, "bootlab"))
}

func TestCompareDebianVersions(t *testing.T) {
	ordered := []string{"1.0~rc1", "1.0", "1.0-1", "1.0-2", "1.0a", "1.0+b1", "1.1", "1.10", "6.1.0-47", "6.1.0-50", "6.12.100+deb12", "6.12.111+deb12", "1:0.1"}
	for i := range ordered {
		for j := range ordered {
			got := CompareDebianVersions(ordered[i], ordered[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("compare(%s, %s) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestParseKernelSeriesFiltersAndOrders(t *testing.T) {
	in := `linux-image-6.12.111+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
linux-image-6.1.0-50-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-50-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.12-amd64 - Linux for 64-bit PCs (meta-package)
linux-image-6.1.0-47-rt-amd64 - Linux 6.1 for 64-bit PCs, PREEMPT_RT (signed)
linux-image-6.12.100+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
linux-image-6.1.0-47-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-9-amd64 - Linux 6.1 for 64-bit PCs (signed)
`
	got := parseKernelSeries(in)
	want := []string{"linux-image-6.1.0-9-amd64", "linux-image-6.1.0-47-amd64", "linux-image-6.1.0-50-amd64",
		"linux-image-6.12.100+deb12-amd64", "linux-image-6.12.111+deb12-amd64"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("parseKernelSeries:\n got %v\nwant %v", got, want)
	}
}

func TestKernelSeriesFromApt(t *testing.T) {
	series, err := KernelSeries(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(series) < 3 {
		t.Fatalf("apt offers %d kernel builds, the baseline needs at least 3: %v", len(series), series)
	}
	var has61, has612 bool
	for _, s := range series {
		has61 = has61 || strings.HasPrefix(s, "linux-image-6.1.0-")
		has612 = has612 || strings.HasPrefix(s, "linux-image-6.12.")
	}
	if !has61 || !has612 {
		t.Errorf("want both 6.1 and 6.12 builds, got %v", series)
	}
	t.Logf("%d kernels: %v", len(series), series)
}

func TestDebianInstallerNetboot(t *testing.T) {
	nb, err := testCache().DebianInstallerNetboot(testCtx(t, 10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{nb.Kernel, nb.Initrd} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() < 1<<20 {
			t.Errorf("%s is only %d bytes", p, st.Size())
		}
	}
	f, err := os.Open(nb.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := gzip.NewReader(f); err != nil {
		t.Errorf("installer initrd is not gzip: %v", err)
	}
}

func TestTouchAndPruneKeepsRecentAndInProgress(t *testing.T) {
	root := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for i, n := range []string{"a", "b", "c", "d", ".tmp-e-123"} {
		p := filepath.Join(root, n)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		mt := old.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	touchAndPrune(filepath.Join(root, "a"), "*", 2) // a becomes the newest
	var left []string
	es, _ := os.ReadDir(root)
	for _, e := range es {
		left = append(left, e.Name())
	}
	if got := strings.Join(left, " "); got != ".tmp-e-123 a d" {
		t.Errorf("after pruning: %q, want the touched dir, the newest other and the in-progress build", got)
	}
}

func TestReadISORootKey(t *testing.T) {
	ctx := testCtx(t, 40*time.Minute)
	key := testKey(t, 1)
	iso, err := testCache().BuildFixtureISO(ctx, FixtureSpec{RootKey: key, BinDir: testBinaries(t)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadISORootKey(iso.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got != key {
		t.Errorf("ReadISORootKey = %q, want %q", got, key)
	}
	if _, err := ReadISORootKey(iso.Initrd); err == nil {
		t.Error("ReadISORootKey accepted a file that is not an ISO")
	}
}

func TestWantedByMakesEnableSymlinks(t *testing.T) {
	unit := "[Unit]\nDescription=x\nWantedBy=not-this.target\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nWantedBy=a.target b.target\n"
	assert.Equal(t, []string{"multi-user.target", "a.target", "b.target"}, wantedBy(unit))
	assert.Empty(t, wantedBy("[Service]\nExecStart=/bin/true\n"))
}

// The base's build options: Debian's base runs no extra step and keys the base as
// before the options existed (the cached base stays valid), every lever changes the
// key, and an option the builder does not know is refused before anything is built.
func TestFixtureBaseOptions(t *testing.T) {
	deb := DebianFixtureBase()
	assert.NoError(t, deb.Validate())
	assert.Empty(t, deb.script(), "Debian's base runs nothing after the customize script")
	assert.Equal(t, []string{"-comp", "zstd", "-b", "131072", "-Xcompression-level", "3"}, deb.mksquashfsArgs())

	lean := deb
	lean.Initramfs, lean.Units = "lean", "lean"
	s := lean.script()
	for _, want := range []string{"MODULES=list", "drivers/net", "virtio_rng", "ata_piix", "sr_mod", "isofs", "squashfs", "overlay",
		"update-initramfs -u -k all", "raid[0-9]+", "rm -f /etc/systemd/system/multi-user.target.wants/e2scrub_reap.service",
		"timers.target.wants/apt-daily.timer"} {
		assert.Contains(t, s, want)
	}
	assert.NotContains(t, s, "mdadm.service", "the RAID and LVM tooling stays")

	lz4 := deb
	lz4.Compressor, lz4.CompressionLevel, lz4.BlockKB = "lz4", 0, 64
	assert.NoError(t, lz4.Validate())
	assert.Equal(t, []string{"-comp", "lz4", "-b", "65536"}, lz4.mksquashfsArgs())

	for name, b := range map[string]FixtureBase{
		`initramfs "all"`:     {Initramfs: "all", Units: "all", Compressor: "zstd", BlockKB: 128},
		`units "none"`:        {Initramfs: "most", Units: "none", Compressor: "zstd", BlockKB: 128},
		`compressor "brotli"`: {Initramfs: "most", Units: "all", Compressor: "brotli", BlockKB: 128},
		"only for zstd":       {Initramfs: "most", Units: "all", Compressor: "lz4", CompressionLevel: 3, BlockKB: 128},
		"block size 100 KiB":  {Initramfs: "most", Units: "all", Compressor: "zstd", BlockKB: 100},
		"block size 2048 KiB": {Initramfs: "most", Units: "all", Compressor: "zstd", BlockKB: 2048},
	} {
		assert.ErrorContains(t, b.Validate(), name)
	}
	h, sum := newHasher("fixture-base")
	h.add("layout", baseLayout)
	h.add("packages", strings.Join(fixturePackages, ","))
	h.add("customize", customizeScript)
	h.add("mirrors", strings.Join(hostMirrors(), "\n"))
	assert.Equal(t, sum(), fixtureBaseKey(deb), "Debian's base keeps the key it had before the options")
	keys := map[string]bool{fixtureBaseKey(deb): true}
	for _, b := range []FixtureBase{lean, lz4, {Initramfs: "lean", Units: "all", Compressor: "zstd", CompressionLevel: 3, BlockKB: 128},
		{Initramfs: "most", Units: "all", Compressor: "zstd", CompressionLevel: 3, BlockKB: 64}} {
		k := fixtureBaseKey(b)
		assert.False(t, keys[k], "%+v shares a key", b)
		keys[k] = true
	}
	_, err := testCache().BuildFixtureISO(context.Background(), FixtureSpec{RootKey: "ssh-ed25519 AAAA x", Base: &FixtureBase{Initramfs: "x", Units: "all", Compressor: "zstd", BlockKB: 128}})
	assert.ErrorContains(t, err, `initramfs "x"`, "refused before any tool or build")
}

// The lean initramfs's hook, run as mkinitramfs runs it on a tree like the one the
// packages' hooks left: the RAID personalities mdadm's hook force-loads are no longer
// loaded (the lines mkinitramfs writes end in a space), every other module still is,
// and the network and graphics drivers are gone while the storage ones stay.
func TestLeanInitramfsHook(t *testing.T) {
	dest := t.TempDir()
	hook := filepath.Join(t.TempDir(), "zz-bootlab-lean")
	assert.NoError(t, os.WriteFile(hook, []byte(leanInitramfsHook), 0o755))
	mods := filepath.Join(dest, "usr/lib/modules/6.1.0-57-amd64/kernel/drivers")
	for _, d := range []string{"net/virtio_net", "gpu/drm", "scsi", "ata", "md"} {
		assert.NoError(t, os.MkdirAll(filepath.Join(mods, d), 0o755))
		assert.NoError(t, os.WriteFile(filepath.Join(mods, d, "x.ko"), []byte("ko"), 0o644))
	}
	assert.NoError(t, os.MkdirAll(filepath.Join(dest, "conf"), 0o755))
	in := "virtio_pci \nsr_mod \nlinear \nmultipath \nraid0 \nraid1 \nraid456 \nraid5 \nraid6 \nraid10 \nefivarfs \nraid6_pq_extra \nsquashfs \n"
	assert.NoError(t, os.WriteFile(filepath.Join(dest, "conf/modules"), []byte(in), 0o644))

	cmd := exec.Command("/bin/sh", hook, "prereqs")
	cmd.Env = append(os.Environ(), "DESTDIR="+dest)
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "%s", out)
	b, _ := os.ReadFile(filepath.Join(dest, "conf/modules"))
	assert.Equal(t, in, string(b), "asked for its prerequisites, the hook changes nothing")

	cmd = exec.Command("/bin/sh", hook)
	cmd.Env = append(os.Environ(), "DESTDIR="+dest)
	out, err = cmd.CombinedOutput()
	assert.NoError(t, err, "%s", out)
	b, _ = os.ReadFile(filepath.Join(dest, "conf/modules"))
	assert.Equal(t, "virtio_pci \nsr_mod \nraid6_pq_extra \nsquashfs \n", string(b))
	for d, want := range map[string]bool{"net": false, "gpu": false, "scsi": true, "ata": true, "md": true} {
		_, err := os.Stat(filepath.Join(mods, d))
		assert.Equal(t, want, err == nil, d)
	}
	assert.Contains(t, DefaultFixtureBase.script(), "<<'HOOKEOF'\n"+leanInitramfsHook+"HOOKEOF\n", "the default base installs this hook")
}

// An image variant is the standard fixture plus the files VariantFiles names: the key
// only when the variant brings one, the broken unit's drop-in, the extra files; the
// standard fixture has none.
func TestVariantFiles(t *testing.T) {
	none, err := FixtureSpec{}.VariantFiles()
	require.NoError(t, err)
	require.Empty(t, none, "the standard fixture is no variant")
	keyFile := filepath.Join(t.TempDir(), "k.pub")
	require.NoError(t, os.WriteFile(keyFile, []byte("ssh-ed25519 AAAAfile other\n"), 0o644))
	for name, c := range map[string]struct {
		spec FixtureSpec
		want map[string]File
	}{
		"broken unit": {FixtureSpec{BreakUnit: "/bin/false"}, map[string]File{BreakUnitDropIn: {Content: "# bootlab negative test: this unit is broken on purpose\n[Service]\nExecStart=\nExecStart=/bin/false\n"}}},
		"other key":   {FixtureSpec{RootKey: " ssh-ed25519 AAAAx other "}, map[string]File{ISORootKeyPath: {Content: "ssh-ed25519 AAAAx other\n", Mode: 0o444}}},
		"key file":    {FixtureSpec{RootKeyFile: keyFile}, map[string]File{ISORootKeyPath: {Content: "ssh-ed25519 AAAAfile other\n", Mode: 0o444}}},
		"files":       {FixtureSpec{Files: map[string]File{"/etc/x.conf": {Content: "x", Mode: 0o600}}}, map[string]File{"/etc/x.conf": {Content: "x", Mode: 0o600}}},
	} {
		got, err := c.spec.VariantFiles()
		require.NoError(t, err, name)
		require.Equal(t, c.want, got, name)
	}
	_, err = FixtureSpec{RootKeyFile: filepath.Join(t.TempDir(), "missing")}.VariantFiles()
	require.ErrorContains(t, err, "reading the root key")
}
