package isoinspect

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// need fails the test (never skips) naming the Debian package that provides tool.
func need(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s not found: apt-get install -y %s (make deps installs it)", tool, pkg)
	}
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func newKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment
}

// sshKeygenFingerprint asks OpenSSH, so our fingerprint is checked against the tool a
// person would use, not against the same library call.
func sshKeygenFingerprint(t *testing.T, line string) string {
	t.Helper()
	need(t, "ssh-keygen", "openssh-client")
	p := filepath.Join(t.TempDir(), "k.pub")
	if err := os.WriteFile(p, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-E", "sha256", "-lf", p).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[1]
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(body, "->") {
			if err := os.Symlink(strings.TrimPrefix(body, "->"), full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeyFingerprint(t *testing.T) {
	line := newKey(t, "root@bootlab")
	got, err := KeyFingerprint(line + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := sshKeygenFingerprint(t, line); got != want {
		t.Fatalf("fingerprint %s, ssh-keygen says %s", got, want)
	}
	if _, err := KeyFingerprint("ssh-ed25519 not-base64!"); err == nil {
		t.Fatal("garbage accepted as a key")
	}
}

// The fixture ISO's shape: /live/filesystem.squashfs (a root filesystem with an old key)
// plus /live/zz-config.squashfs, a small layer holding the current key; the last layer
// must win, as in the booted overlay.
func TestInspectLayeredISO(t *testing.T) {
	need(t, "xorriso", "xorriso")
	need(t, "mksquashfs", "squashfs-tools")
	dir := t.TempDir()
	oldKey, newKeyLine := newKey(t, "old"), newKey(t, "current")
	base, layer, iso := filepath.Join(dir, "base"), filepath.Join(dir, "layer"), filepath.Join(dir, "iso")
	writeTree(t, base, map[string]string{
		"etc/systemd/system/pre-nixos.service":         "[Unit]\nDescription=pre-nixos\n",
		"lib/systemd/system/systemd-networkd.service":  "[Unit]\n",
		"usr/lib/systemd/system/ssh.service":           "[Unit]\n",
		"etc/systemd/system/multi-user.target.wants/x": "->../pre-nixos.service",
		"etc/pre-nixos/root_key.pub":                   oldKey + "\n",
		"usr/bin/pre-nixos":                            strings.Repeat("x", 5000),
		"usr/share/doc/readme.service":                 "not a unit: wrong directory",
	})
	writeTree(t, layer, map[string]string{"etc/pre-nixos/root_key.pub": "# embedded at build time\n" + newKeyLine + "\n"})
	if err := os.MkdirAll(filepath.Join(iso, "live"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "mksquashfs", base, filepath.Join(iso, "live", "filesystem.squashfs"), "-noappend", "-comp", "zstd", "-quiet", "-no-progress")
	run(t, dir, "mksquashfs", layer, filepath.Join(iso, "live", "zz-config.squashfs"), "-noappend", "-all-root", "-comp", "gzip", "-quiet", "-no-progress")
	writeTree(t, iso, map[string]string{"live/vmlinuz": "kernel", "isolinux/isolinux.cfg": "DEFAULT live\n"})
	isoPath := filepath.Join(dir, "fixture.iso")
	run(t, dir, "xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "BOOTLAB_TEST", "-o", isoPath, iso)

	rep, err := InspectISO(context.Background(), isoPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Fatalf("problems: %v", rep.Problems)
	}
	if rep.Label != "BOOTLAB_TEST" {
		t.Errorf("label %q", rep.Label)
	}
	if strings.Join(rep.Layers, ",") != "live/filesystem.squashfs,live/zz-config.squashfs" {
		t.Fatalf("layers %v", rep.Layers)
	}
	if rep.RootKey == nil || rep.RootKey.Line != newKeyLine || rep.RootKey.Layer != "live/zz-config.squashfs" {
		t.Fatalf("root key %+v, want the top layer's %q", rep.RootKey, newKeyLine)
	}
	if want := sshKeygenFingerprint(t, newKeyLine); rep.RootKey.Fingerprint != want {
		t.Fatalf("fingerprint %s, want %s", rep.RootKey.Fingerprint, want)
	}
	if len(rep.Keys) != 2 || rep.Keys[0].Line != oldKey {
		t.Fatalf("keys %+v", rep.Keys)
	}
	var units []string
	for _, u := range rep.Units {
		units = append(units, u.Layer+":"+u.Path)
	}
	wantUnits := "live/filesystem.squashfs:etc/systemd/system/pre-nixos.service,live/filesystem.squashfs:lib/systemd/system/systemd-networkd.service,live/filesystem.squashfs:usr/lib/systemd/system/ssh.service"
	if strings.Join(units, ",") != wantUnits {
		t.Fatalf("units %v", units)
	}
	have := map[string]File{}
	for _, f := range rep.Files {
		have[f.Layer+":"+f.Path] = f
	}
	for _, p := range []string{":live/vmlinuz", ":isolinux/isolinux.cfg", "live/filesystem.squashfs:usr/bin/pre-nixos", "live/zz-config.squashfs:etc/pre-nixos/root_key.pub"} {
		if _, ok := have[p]; !ok {
			t.Errorf("file %s not listed", p)
		}
	}
	if f := have["live/filesystem.squashfs:usr/bin/pre-nixos"]; f.Size != 5000 || !f.Mode.IsRegular() {
		t.Errorf("pre-nixos entry %+v", f)
	}

	key, err := RootKey(context.Background(), isoPath)
	if err != nil || key == nil || key.Line != newKeyLine {
		t.Fatalf("RootKey = %+v, %v; want the top layer's key", key, err)
	}
	img, err := Provenance(context.Background(), isoPath)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := exec.Command("sha256sum", isoPath).Output()
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(isoPath)
	if img.Kind != "iso" || img.Path != isoPath || img.Size != st.Size() || img.SHA256 != strings.Fields(string(sum))[0] ||
		img.RootKeyFingerprint != rep.RootKey.Fingerprint || img.StorePath != "" {
		t.Fatalf("provenance %+v", img)
	}

	var out bytes.Buffer
	if err := rep.WriteText(&out, true); err != nil {
		t.Fatal(err)
	}
	txt := out.String()
	for _, want := range []string{
		"root key fingerprint: " + rep.RootKey.Fingerprint + "\n",
		"root key file: live/zz-config.squashfs:/etc/pre-nixos/root_key.pub\n",
		"shadowed key: " + rep.Keys[0].Fingerprint,
		"unit files: 3\n", "live/filesystem.squashfs:/usr/bin/pre-nixos\n", "/live/vmlinuz\n",
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("text output lacks %q:\n%s", want, txt)
		}
	}
}

// The NixOS image keeps the key as a plain file on the ISO.
func TestInspectISOKeyOnISO(t *testing.T) {
	need(t, "xorriso", "xorriso")
	dir := t.TempDir()
	key := newKey(t, "nixos")
	writeTree(t, filepath.Join(dir, "tree"), map[string]string{"pre_nixos/root_key.pub": key + "\n", "boot/bzImage": "k"})
	isoPath := filepath.Join(dir, "n.iso")
	run(t, dir, "xorriso", "-as", "mkisofs", "-quiet", "-R", "-o", isoPath, filepath.Join(dir, "tree"))
	rep, err := InspectISO(context.Background(), isoPath)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RootKey == nil || rep.RootKey.Line != key || rep.RootKey.Layer != "" || rep.RootKey.Path != "pre_nixos/root_key.pub" {
		t.Fatalf("root key %+v", rep.RootKey)
	}
	if len(rep.Layers) != 0 {
		t.Fatalf("layers %v", rep.Layers)
	}
}

func TestInspectISONoKeyAndNotAnISO(t *testing.T) {
	need(t, "xorriso", "xorriso")
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "tree"), map[string]string{"README": "x"})
	isoPath := filepath.Join(dir, "plain.iso")
	run(t, dir, "xorriso", "-as", "mkisofs", "-quiet", "-R", "-o", isoPath, filepath.Join(dir, "tree"))
	rep, err := InspectISO(context.Background(), isoPath)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_ = rep.WriteText(&out, false)
	if rep.RootKey != nil || !strings.Contains(out.String(), "root key: none found") {
		t.Fatalf("key reported on a keyless ISO: %s", out.String())
	}
	junk := filepath.Join(dir, "junk.iso")
	_ = os.WriteFile(junk, bytes.Repeat([]byte{7}, 1<<20), 0o644)
	if _, err := InspectISO(context.Background(), junk); err == nil || !strings.Contains(err.Error(), "ISO9660") {
		t.Fatalf("junk accepted: %v", err)
	}
}

// initrdTree builds a directory, archives it with GNU cpio -H newc (the real tool, so
// the hand-written reader is checked against an independent writer) and returns the
// archive bytes.
func newcArchive(t *testing.T, files map[string]string) []byte {
	t.Helper()
	need(t, "cpio", "cpio")
	root := t.TempDir()
	writeTree(t, root, files)
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio -o -H newc --quiet")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compress(t *testing.T, tool string, data []byte) []byte {
	t.Helper()
	need(t, tool, map[string]string{"gzip": "gzip", "zstd": "zstd", "xz": "xz-utils"}[tool])
	cmd := exec.Command(tool, "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInspectKernelInitrdFormats(t *testing.T) {
	key := newKey(t, "initrd")
	main := newcArchive(t, map[string]string{
		"init":                                 "#!/bin/sh\n",
		"bin/sh":                               "->busybox",
		"bin/busybox":                          strings.Repeat("b", 1234),
		"etc/pre-nixos/root_key.pub":           key + "\n",
		"etc/systemd/system/pre-nixos.service": "[Unit]\n",
	})
	micro := newcArchive(t, map[string]string{"kernel/x86/microcode/GenuineIntel.bin": "ucode"})
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	writeFakeBzImage(t, kernel, "6.1.0-27-amd64 (debian-kernel@lists.debian.org) #1 SMP")
	cases := map[string][]byte{
		"none":       main,
		"gzip":       compress(t, "gzip", main),
		"zstd":       compress(t, "zstd", main),
		"xz":         compress(t, "xz", main),
		"micro+zstd": append(append(append([]byte{}, micro...), make([]byte, 512-len(micro)%512)...), compress(t, "zstd", main)...),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			initrd := filepath.Join(dir, name+".img")
			if err := os.WriteFile(initrd, data, 0o644); err != nil {
				t.Fatal(err)
			}
			rep, err := InspectKernel(context.Background(), kernel, initrd)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != 0 {
				t.Fatalf("problems %v", rep.Problems)
			}
			if rep.Label != "6.1.0-27-amd64 (debian-kernel@lists.debian.org) #1 SMP" {
				t.Errorf("kernel version %q", rep.Label)
			}
			have := map[string]File{}
			for _, f := range rep.Files {
				have[f.Path] = f
			}
			if f := have["bin/busybox"]; f.Size != 1234 || !f.Mode.IsRegular() {
				t.Errorf("busybox %+v", f)
			}
			if f := have["bin/sh"]; f.Link != "busybox" {
				t.Errorf("symlink %+v", f)
			}
			if !have["etc"].Mode.IsDir() {
				t.Errorf("etc not a directory: %+v", have["etc"])
			}
			if _, ok := have["kernel/x86/microcode/GenuineIntel.bin"]; ok != strings.HasPrefix(name, "micro") {
				t.Errorf("microcode segment listed=%v", ok)
			}
			if rep.RootKey == nil || rep.RootKey.Line != key || rep.RootKey.Fingerprint != sshKeygenFingerprint(t, key) {
				t.Fatalf("root key %+v", rep.RootKey)
			}
			if len(rep.Units) != 1 || rep.Units[0].Path != "etc/systemd/system/pre-nixos.service" {
				t.Fatalf("units %+v", rep.Units)
			}
			img, err := KernelProvenance(context.Background(), kernel, initrd, "console=ttyS0")
			if err != nil {
				t.Fatal(err)
			}
			if img.Kind != "kernel" || img.Initrd != initrd || len(img.InitrdSHA256) != 64 || len(img.SHA256) != 64 ||
				img.Append != "console=ttyS0" || img.RootKeyFingerprint != rep.RootKey.Fingerprint {
				t.Fatalf("kernel provenance %+v", img)
			}
		})
	}
}

func TestReadInitrdSegmentsAndErrors(t *testing.T) {
	a := newcArchive(t, map[string]string{"a": "1"})
	b := newcArchive(t, map[string]string{"b": "2"})
	chain := append(append(append([]byte{}, a...), 0, 0, 0, 0), compress(t, "gzip", b)...)
	var seen []string
	err := ReadInitrd(context.Background(), bytes.NewReader(chain), func(e CPIOEntry, data io.Reader) error {
		body, _ := io.ReadAll(data)
		seen = append(seen, fmt.Sprintf("%d/%s/%s=%s", e.Segment, e.Compression, e.Name, body))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, " ") != "0/none/.= 0/none/a=1 1/gzip/.= 1/gzip/b=2" {
		t.Fatalf("entries %v", seen)
	}
	if err := ReadInitrd(context.Background(), strings.NewReader("BZh91AY&SY garbage"), func(CPIOEntry, io.Reader) error { return nil }); err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Fatalf("bzip2 should be named unsupported: %v", err)
	}
	trunc := a[:200] // inside the entries: GNU cpio pads the end with zeros, so cutting the end proves nothing
	if err := ReadInitrd(context.Background(), bytes.NewReader(trunc), func(CPIOEntry, io.Reader) error { return nil }); err == nil {
		t.Fatal("truncated archive accepted")
	}
}

func writeFakeBzImage(t *testing.T, p, version string) {
	t.Helper()
	img := make([]byte, 0x1000)
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x20e:], 0x600) // version at 0x600+0x200
	copy(img[0x800:], version+"\x00")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := KernelVersion(filepath.Join(filepath.Dir(p), "missing")); err == nil {
		t.Fatal("missing kernel accepted")
	}
}

func TestStorePathOf(t *testing.T) {
	for in, want := range map[string]string{
		"/nix/store/abc123-nixos.iso/iso/nixos.iso": "/nix/store/abc123-nixos.iso",
		"/nix/store/abc123-kernel":                  "/nix/store/abc123-kernel",
		"/nix/store/":                               "",
		"/tmp/x.iso":                                "",
	} {
		if got := StorePathOf(in); got != want {
			t.Errorf("StorePathOf(%q) = %q, want %q", in, got, want)
		}
	}
}
