package isoinspect

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storeHash is a 32-character Nix store hash (Nix's base32 alphabet has no e, o, u, t).
func storeHash(c byte) string { return strings.Repeat(string(c), 32) }

// nixStoreSquashfs builds a squashfs laid out as nixos/lib/make-squashfs.nix does:
// `mksquashfs nix-path-registration $(store paths) out -keep-as-directory -all-root
// -b 1048576 -comp xz`, so the store paths are the squashfs root's entries.
func nixStoreSquashfs(t *testing.T, dir string, store map[string]string) string {
	t.Helper()
	need(t, "mksquashfs", "squashfs-tools")
	root := filepath.Join(dir, "store")
	writeTree(t, root, store)
	reg := filepath.Join(dir, "nix-path-registration")
	require.NoError(t, os.WriteFile(reg, []byte("/nix/store/...\n"), 0o644))
	ents, err := os.ReadDir(root)
	require.NoError(t, err)
	args := []string{reg}
	for _, e := range ents {
		args = append(args, filepath.Join(root, e.Name()))
	}
	out := filepath.Join(dir, "nix-store.squashfs")
	args = append(args, out, "-keep-as-directory", "-all-root", "-b", "1048576", "-comp", "xz", "-noappend", "-quiet", "-no-progress")
	run(t, dir, "mksquashfs", args...)
	return out
}

// Issue 13: the flake's key (provisioner/nixos/module.nix: environment.etc.
// "pre-nixos/root_key.pub".text, mode 0444) on an ISO with NixOS's layout. Two
// systems are in the store (as with a specialisation or a leftover closure); the one
// the boot entry starts wins, though its name sorts first.
func TestInspectNixOSISOLayout(t *testing.T) {
	need(t, "xorriso", "xorriso")
	dir := t.TempDir()
	key, oldKey := newKey(t, "root@nixos"), newKey(t, "old")
	etc, keyFile, sys := storeHash('a')+"-etc", storeHash('b')+"-etc-root_key.pub", storeHash('c')+"-nixos-system-nixos-25.11pre"
	oldEtc, oldKeyFile, oldSys := storeHash('x')+"-etc", storeHash('y')+"-etc-root_key.pub", storeHash('z')+"-nixos-system-nixos-old"
	issue := storeHash('d') + "-etc-issue"
	unit := storeHash('f') + "-unit-pre-nixos.service"
	store := map[string]string{
		keyFile:                                  key + "\n",
		etc + "/etc/pre-nixos/root_key.pub":      "->/nix/store/" + keyFile,
		etc + "/etc/pre-nixos/root_key.pub.mode": "0444\n",
		etc + "/etc/pre-nixos/root_key.pub.uid":  "+0\n",
		etc + "/etc/issue":                       "->/nix/store/" + issue,
		etc + "/etc/systemd/system":              "->/nix/store/" + unit,
		issue:                                    "Welcome\n",
		unit + "/pre-nixos.service":              "[Unit]\n",
		sys + "/etc":                             "->/nix/store/" + etc + "/etc",
		sys + "/init":                            "#!/bin/sh\n",
		oldKeyFile:                               oldKey + "\n",
		oldEtc + "/etc/pre-nixos/root_key.pub":   "->../../../" + oldKeyFile, // relative links resolve too
		oldSys + "/etc":                          "->/nix/store/" + oldEtc + "/etc",
	}
	sq := nixStoreSquashfs(t, dir, store)
	isoDir := filepath.Join(dir, "iso")
	writeTree(t, isoDir, map[string]string{
		"isolinux/isolinux.cfg": "SERIAL 0 115200\nLABEL boot\nMENU LABEL NixOS\nLINUX /boot/bzImage\nAPPEND init=/nix/store/" + sys + "/init root=LABEL=nixos-minimal loglevel=4\n",
		"boot/bzImage":          "kernel",
		"version.txt":           "25.11pre",
	})
	require.NoError(t, os.Rename(sq, filepath.Join(isoDir, "nix-store.squashfs")))
	isoPath := filepath.Join(dir, "nixos.iso")
	run(t, dir, "xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "nixos-minimal", "-o", isoPath, isoDir)

	got, err := RootKey(context.Background(), isoPath)
	require.NoError(t, err)
	require.NotNil(t, got, "no key found on the NixOS layout")
	assert.Equal(t, key, got.Line)
	assert.Equal(t, "nix-store.squashfs", got.Layer)
	assert.Equal(t, sys+"/etc/pre-nixos/root_key.pub", got.Path)
	assert.Equal(t, keyFile, got.Resolved)
	assert.Equal(t, sshKeygenFingerprint(t, key), got.Fingerprint)

	rep, err := InspectISO(context.Background(), isoPath)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	require.NotNil(t, rep.RootKey)
	assert.Equal(t, key, rep.RootKey.Line)
	require.Len(t, rep.Keys, 2)
	assert.Equal(t, oldKey, rep.Keys[0].Line, "the other system's key is listed, shadowed")
	assert.Equal(t, oldKeyFile, rep.Keys[0].Resolved)
	var out bytes.Buffer
	require.NoError(t, rep.WriteText(&out, false))
	assert.Contains(t, out.String(), "root key file: nix-store.squashfs:/"+sys+"/etc/pre-nixos/root_key.pub\n")
	assert.Contains(t, out.String(), "root key file resolves to: nix-store.squashfs:/"+keyFile+"\n")

	img, err := Provenance(context.Background(), isoPath)
	require.NoError(t, err)
	assert.Equal(t, got.Fingerprint, img.RootKeyFingerprint)
}

// The store links of a hostile image: a cycle ends at the hop limit, a link out of
// the store is refused (the booted system would read the live machine's file, not
// the image's), and a key file over the cap is refused before it is read.
func TestNixStoreHostileLinks(t *testing.T) {
	dir := t.TempDir()
	big := storeHash('g') + "-etc-root_key.pub"
	store := map[string]string{
		storeHash('a') + "-nixos-system-loop/etc":          "->/nix/store/" + storeHash('b') + "-etc/etc",
		storeHash('b') + "-etc/etc":                        "->/nix/store/" + storeHash('a') + "-nixos-system-loop/etc",
		storeHash('c') + "-nixos-system-out/etc":           "->/etc",
		storeHash('d') + "-nixos-system-big/etc":           "->/nix/store/" + storeHash('f') + "-etc/etc",
		storeHash('f') + "-etc/etc/pre-nixos/root_key.pub": "->/nix/store/" + big,
		big: newKey(t, "padded") + "\n" + strings.Repeat("#", 70<<10) + "\n",
	}
	isoDir := filepath.Join(dir, "iso")
	require.NoError(t, os.MkdirAll(isoDir, 0o755))
	require.NoError(t, os.Rename(nixStoreSquashfs(t, dir, store), filepath.Join(isoDir, "nix-store.squashfs")))
	need(t, "xorriso", "xorriso")
	isoPath := filepath.Join(dir, "n.iso")
	run(t, dir, "xorriso", "-as", "mkisofs", "-quiet", "-R", "-o", isoPath, isoDir)
	rep, err := InspectISO(context.Background(), isoPath)
	require.NoError(t, err)
	assert.Nil(t, rep.RootKey)
	probs := strings.Join(rep.Problems, "\n")
	assert.Contains(t, probs, "more than 16 symlinks resolving "+storeHash('a')+"-nixos-system-loop/etc/pre-nixos/root_key.pub")
	assert.Contains(t, probs, storeHash('c')+"-nixos-system-out/etc links outside the Nix store, to /etc")
	assert.Contains(t, probs, "more than the 65536 a key file may have")
}
