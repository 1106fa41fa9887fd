package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The layer masks what a provisioning boot never needs the way `systemctl mask` does
// (a symlink to /dev/null in /etc/systemd/system), and keeps what pre-nixos and the
// harness need.
func TestLayerMasksUnits(t *testing.T) {
	for _, tool := range []string{"mksquashfs", "unsquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: apt-get install squashfs-tools", tool)
		}
	}
	out := t.TempDir()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "pre-nixos"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	prov := &payload{binDir: bin, names: []string{"pre-nixos"}, unit: fallbackPreNixosUnit, dropIn: fallbackSSHDropIn}
	if err := buildLayer(context.Background(), out, "ssh-ed25519 AAAA test", FixtureSpec{}, prov); err != nil {
		t.Fatal(err)
	}
	listing, err := exec.Command("unsquashfs", "-lls", filepath.Join(out, "config.squashfs")).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v: %s", err, listing)
	}
	l := string(listing)
	if len(fixtureMasked) == 0 {
		t.Fatal("no units masked")
	}
	for _, u := range fixtureMasked {
		if !strings.Contains(l, "/etc/systemd/system/"+u+" -> /dev/null") {
			t.Errorf("%s is not masked in the layer:\n%s", u, l)
		}
	}
	for _, keep := range []string{"systemd-networkd", "systemd-udevd", "systemd-journald", "systemd-logind", "serial-getty", "ssh.service ", "dbus", "pre-nixos.service ", "blk-availability"} {
		for _, u := range fixtureMasked {
			if strings.HasPrefix(u, strings.TrimSpace(keep)) {
				t.Errorf("%s is masked, but pre-nixos or the harness needs it", u)
			}
		}
	}
}
