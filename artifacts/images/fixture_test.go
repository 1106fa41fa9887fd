package images

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testKey derives a fixed ed25519 public key from seed, so repeated test runs reuse the
// cached ISO for that key instead of filling the cache with one ISO per run.
func testKey(t *testing.T, seed byte) string {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(s).Public())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " bootlab-test-" + strconv.Itoa(int(seed))
}

// testBinaries builds the pre-nixos binaries once per test: other engineers edit
// provisioner/ while this runs, and a mid-test rebuild would change the base key.
func testBinaries(t *testing.T) string {
	t.Helper()
	src, err := findSourceDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := testCache().preNixosBinaries(testCtx(t, 10*time.Minute), FixtureSpec{}, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if _, err := os.Stat(filepath.Join(dir, "pre-nixos")); err != nil {
		t.Fatalf("go build produced no pre-nixos binary: %v", err)
	}
	return dir
}

func timeoutScale() float64 {
	if f, err := strconv.ParseFloat(os.Getenv("BOOTLAB_TIMEOUT_SCALE"), 64); err == nil && f > 0 {
		return f
	}
	return 1
}

var ansiRE = regexp.MustCompile(`\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\r`)

// expectPlain waits for s in the ANSI-stripped output; the fixture's prompt is coloured
// and sets the title, so the raw bytes never contain it verbatim.
func (vm *testVM) expectPlain(s string, timeout time.Duration) {
	vm.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		vm.mu.Lock()
		all := vm.out.String()
		vm.mu.Unlock()
		plain := ansiRE.ReplaceAllString(all[vm.mark:], "")
		if strings.Contains(plain, s) {
			vm.mark = len(all)
			return
		}
		select {
		case <-vm.done:
			vm.t.Fatalf("qemu exited (%v) while waiting for %q; tail:\n%s", vm.err, s, tail(all, 3000))
		default:
		}
		if time.Now().After(deadline) {
			vm.t.Fatalf("timed out after %v waiting for %q; tail:\n%s", timeout, s, tail(all, 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFixtureISO builds the fixture (cold: several minutes), checks that a key-only
// change reuses the base and rebuilds within the 10 s target, then boots the ISO under
// TCG to the auto-logged-in prompt and proves passwordless sudo, the embedded key and
// the held-back sshd.
func TestFixtureISO(t *testing.T) {
	ctx := testCtx(t, 40*time.Minute)
	keyA, keyB := testKey(t, 1), testKey(t, 2)
	bin := testBinaries(t)
	a, err := testCache().BuildFixtureISO(ctx, FixtureSpec{RootKey: keyA, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fixture ISO (key A): %s in %s", a.Path, a.BuildTook)

	// Force a real key-only rebuild for key B every run: drop its cached ISO first.
	probe, err := testCache().BuildFixtureISO(ctx, FixtureSpec{RootKey: keyB, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(probe.Dir); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b, err := testCache().BuildFixtureISO(ctx, FixtureSpec{RootKey: keyB, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	keyOnly := time.Since(start)
	t.Logf("key-only rebuild: %v", keyOnly.Round(time.Millisecond))
	if b.BaseHash != a.BaseHash {
		t.Errorf("a key change rebuilt the base: %s vs %s", a.BaseHash, b.BaseHash)
	}
	if b.Hash == a.Hash || b.Path == a.Path {
		t.Errorf("different keys share an ISO: %s", b.Path)
	}
	if limit := time.Duration(10 * timeoutScale() * float64(time.Second)); keyOnly > limit {
		t.Errorf("key-only rebuild took %v, target %v", keyOnly, limit)
	}
	start = time.Now()
	if _, err := testCache().BuildFixtureISO(ctx, FixtureSpec{RootKey: keyB, BinDir: bin}); err != nil {
		t.Fatal(err)
	}
	t.Logf("warm BuildFixtureISO: %v", time.Since(start).Round(time.Millisecond))

	// A provisioner change (another pre-nixos binary) must rebuild only the layer: the
	// base is a new Debian root (minutes), the layer seconds.
	changed := t.TempDir()
	ents, err := os.ReadDir(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(bin, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "pre-nixos" {
			data = append(data, 0) // trailing byte: same program, different hash
		}
		if err := os.WriteFile(filepath.Join(changed, e.Name()), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	c, err := testCache().BuildFixtureISO(ctx, FixtureSpec{RootKey: keyB, BinDir: changed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(c.Dir) })
	t.Logf("provisioner-only rebuild: %v", time.Since(start).Round(time.Millisecond))
	if c.BaseHash != b.BaseHash {
		t.Errorf("a provisioner change rebuilt the base: %s vs %s", b.BaseHash, c.BaseHash)
	}
	if c.Hash == b.Hash {
		t.Errorf("a provisioner change reused the ISO of the old binaries: %s", c.Path)
	}

	boot := time.Now()
	vm := startVM(t, "-m", "1024", "-cdrom", b.Path, "-nic", "user,model=virtio-net-pci")
	scale := timeoutScale()
	vm.expectPlain(FixturePromptPlain, time.Duration(scale*float64(5*time.Minute)))
	t.Logf("auto-login prompt after %v", time.Since(boot).Round(time.Millisecond))
	vm.mu.Lock()
	raw := vm.out.String()
	vm.mu.Unlock()
	if !strings.Contains(raw, "\x1b]0;bootlab@fixture") {
		t.Error("the prompt does not set the terminal title (OSC 0)")
	}
	if !strings.Contains(raw, "\x1b[1;32mbootlab@fixture") {
		t.Error("the prompt is not coloured")
	}
	vm.send("echo R=$(sudo -n id -u)=\n")
	vm.expectPlain("R=0=", time.Minute)
	vm.send("echo K=$(cat /etc/pre-nixos/root_key.pub)=\n")
	vm.expectPlain("K="+keyB+"=", time.Minute)
	vm.send("echo S=$(sudo -n systemctl is-enabled ssh.service)= P=$(sudo -n systemctl is-enabled pre-nixos.service)= N=$(sudo -n systemctl is-enabled systemd-networkd.service)=\n")
	vm.expectPlain("S=disabled= P=enabled= N=enabled=", time.Minute)
	vm.send("echo W=$(sudo -n systemctl show -p WantedBy --value ssh.service)= A=$(sudo -n systemctl show -p After --value ssh.service | grep -c pre-nixos.service)=\n")
	vm.expectPlain("W== A=1=", time.Minute)
	vm.send("echo PW=$(sudo -n passwd -S root | cut -d' ' -f2)=\n")
	vm.expectPlain("PW=NP=", time.Minute)
	// Root's empty password works for su too (pam_unix nullok: no prompt at all).
	vm.send("su -c 'echo Z=$(id -u)=' root\n")
	vm.expectPlain("Z=0=", time.Minute)
	// dbus is in the image so unprivileged systemctl works too.
	vm.send("echo U=$(systemctl is-enabled pre-nixos.service)=\n")
	vm.expectPlain("U=enabled=", time.Minute)
	vm.send("sudo -n poweroff\n")
	vm.waitExit(time.Duration(scale * float64(2*time.Minute)))
	if testing.Verbose() {
		_ = os.WriteFile(filepath.Join(t.TempDir(), "serial.log"), []byte(raw), 0o644)
	}
}

// TestFixtureBreakUnit is the negative-test knob: the same base, a layer that replaces
// pre-nixos.service's ExecStart with /bin/false, and the unit must end up failed.
func TestFixtureBreakUnit(t *testing.T) {
	ctx := testCtx(t, 40*time.Minute)
	bin := testBinaries(t)
	good, err := testCache().BuildFixtureISO(ctx, FixtureSpec{RootKey: testKey(t, 1), BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := testCache().BuildFixtureISO(ctx, FixtureSpec{RootKey: testKey(t, 1), BinDir: bin, BreakUnit: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	if bad.BaseHash != good.BaseHash || bad.Hash == good.Hash {
		t.Fatalf("BreakUnit must only change the layer: base %s/%s iso %s/%s", good.BaseHash, bad.BaseHash, good.Hash, bad.Hash)
	}
	scale := timeoutScale()
	vm := startVM(t, "-m", "1024", "-cdrom", bad.Path, "-nic", "user,model=virtio-net-pci")
	vm.expectPlain(FixturePromptPlain, time.Duration(scale*float64(5*time.Minute)))
	vm.send("for i in $(seq 120); do s=$(sudo -n systemctl is-active pre-nixos.service); [ \"$s\" = failed ] && break; sleep 1; done; echo F=$s=\n")
	vm.expectPlain("F=failed=", time.Duration(scale*float64(3*time.Minute)))
	vm.send("echo X=$(sudo -n systemctl show -p ExecMainStatus --value pre-nixos.service)=\n")
	vm.expectPlain("X=1=", time.Minute)
	vm.send("sudo -n poweroff\n")
	vm.waitExit(time.Duration(scale * float64(2*time.Minute)))
}
