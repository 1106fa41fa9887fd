package sshd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
)

const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample root@build\n"

func TestHarden(t *testing.T) {
	in := "Include /etc/ssh/sshd_config.d/*.conf\n" +
		"passwordauthentication YES\n" +
		"PermitRootLogin=no\n" +
		"# PasswordAuthentication yes\n" +
		"UsePAM yes\n" +
		"Match User backup\n" +
		"    PasswordAuthentication yes\n" +
		"    PermitRootLogin no\n" +
		"    X11Forwarding no"
	want := marker + "\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n" +
		"Include /etc/ssh/sshd_config.d/*.conf\n" +
		"# PasswordAuthentication yes\n" +
		"UsePAM yes\n" +
		"Match User backup\n" +
		"    PermitRootLogin no\n" +
		"    X11Forwarding no\n"
	got := Harden(in)
	assert.Equal(t, want, got)
	assert.Equal(t, got, Harden(got), "hardening is idempotent")
}

func setup(t *testing.T, withKey bool) (string, Config) {
	root := t.TempDir()
	c := Config{Root: execpolicy.Root{Dir: root}}
	if withKey {
		require.NoError(t, os.MkdirAll(filepath.Join(root, "etc/pre-nixos"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, DefaultKeyFile), []byte(key), 0o644))
	}
	return root, c
}

// NixOS links sshd_config into the read-only store: the link is replaced
// by a regular file and the store copy is untouched.
func TestApplyReplacesReadOnlySymlink(t *testing.T) {
	root, c := setup(t, true)
	store := filepath.Join(t.TempDir(), "store-sshd_config")
	require.NoError(t, os.WriteFile(store, []byte("PermitRootLogin yes\nAcceptEnv LANG\n"), 0o444))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc/ssh"), 0o755))
	require.NoError(t, os.Symlink(store, filepath.Join(root, "etc/ssh/sshd_config")))
	c.Runner = fr.New(t, fr.Call{Cmd: "systemctl reload-or-restart --no-block sshd"})
	require.NoError(t, Apply(context.Background(), c))

	fi, err := os.Lstat(filepath.Join(root, "etc/ssh/sshd_config"))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular())
	got, _ := os.ReadFile(filepath.Join(root, "etc/ssh/sshd_config"))
	assert.Contains(t, string(got), "PasswordAuthentication no\n")
	assert.Contains(t, string(got), "PermitRootLogin prohibit-password\n")
	assert.Contains(t, string(got), "AcceptEnv LANG\n")
	assert.NotContains(t, string(got), "PermitRootLogin yes")
	orig, _ := os.ReadFile(store)
	assert.Equal(t, "PermitRootLogin yes\nAcceptEnv LANG\n", string(orig))

	ak := filepath.Join(root, "root/.ssh/authorized_keys")
	b, err := os.ReadFile(ak)
	require.NoError(t, err)
	assert.Equal(t, key, string(b))
	fi, _ = os.Stat(ak)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	fi, _ = os.Stat(filepath.Dir(ak))
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
}

// Debian names the unit ssh.service; sshd is an alias only while enabled.
func TestApplyFallsBackToSSHUnit(t *testing.T) {
	_, c := setup(t, true)
	c.Runner = fr.New(t, fr.Call{Cmd: "systemctl reload-or-restart --no-block sshd", Exit: 5, Stderr: "Unit sshd.service not found."},
		fr.Call{Cmd: "systemctl reload-or-restart --no-block ssh"})
	require.NoError(t, Apply(context.Background(), c))

	_, c = setup(t, true)
	c.Units = []string{"openssh"}
	c.Runner = fr.New(t, fr.Call{Cmd: "systemctl reload-or-restart --no-block openssh", Exit: 1})
	assert.ErrorContains(t, Apply(context.Background(), c), "starting sshd")
}

func TestApplyMissingKey(t *testing.T) {
	root, c := setup(t, false)
	c.Runner = fr.New(t)
	err := Apply(context.Background(), c)
	assert.ErrorIs(t, err, ErrNoKey)
	// The config is still hardened: password logins must not survive.
	got, _ := os.ReadFile(filepath.Join(root, "etc/ssh/sshd_config"))
	assert.Contains(t, string(got), "PasswordAuthentication no")
	assert.NoFileExists(t, filepath.Join(root, "root/.ssh/authorized_keys"))
}

// Issue 19 item 10: keyboard-interactive (PAM) must not offer a password
// prompt either; an existing "yes" anywhere global is dropped.
func TestHardenDisablesKbdInteractive(t *testing.T) {
	got := Harden("KbdInteractiveAuthentication yes\nChallengeResponseAuthentication yes\nUsePAM yes\nMatch User x\n  KbdInteractiveAuthentication yes\n")
	assert.Contains(t, got, "\nKbdInteractiveAuthentication no\n")
	assert.Equal(t, 1, strings.Count(strings.ToLower(got), "kbdinteractiveauthentication"), "only the managed line remains:\n%s", got)
	assert.NotContains(t, strings.ToLower(got), "challengeresponseauthentication yes")
	assert.Contains(t, got, "PasswordAuthentication no\n")
	assert.Contains(t, got, "PermitRootLogin prohibit-password\n")
}
