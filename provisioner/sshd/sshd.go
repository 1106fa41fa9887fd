// Package sshd hardens sshd for key-only root login with the embedded key
// and asks systemd to (re)start it without waiting.
package sshd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"strings"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
)

// Defaults.
const (
	DefaultKeyFile = "/etc/pre-nixos/root_key.pub"
	KeyFileEnv     = "PRE_NIXOS_ROOT_KEY_FILE"
	UnitEnv        = "PRE_NIXOS_SSHD_UNIT"
	marker         = "# Managed by pre-nixos: key-only root login."
)

// DefaultUnits are tried in order: NixOS calls the unit sshd, Debian ssh.
var DefaultUnits = []string{"sshd", "ssh"}

// ErrNoKey means the embedded root key is missing or empty.
var ErrNoKey = errors.New("missing authorized key")

// Config drives hardening.
type Config struct {
	Root     execpolicy.Root
	SSHDir   string // default /etc/ssh
	RootHome string // default /root
	KeyFile  string // default DefaultKeyFile (read under Root)
	Units    []string
	Runner   execpolicy.Runner
	Log      *slog.Logger
}

// managed keywords are written first by Harden and dropped elsewhere.
// KbdInteractiveAuthentication is managed too: left unset, sshd's PAM
// keyboard-interactive method can still ask for a password.
var managed = map[string]bool{"passwordauthentication": true, "permitrootlogin": true, "kbdinteractiveauthentication": true, "challengeresponseauthentication": true}

func keyword(line string) (string, string) {
	s := strings.TrimSpace(line)
	if s == "" || strings.HasPrefix(s, "#") {
		return "", ""
	}
	i := strings.IndexAny(s, " \t=")
	if i < 0 {
		return strings.ToLower(s), ""
	}
	rest := strings.TrimLeft(s[i:], " \t=")
	return strings.ToLower(s[:i]), strings.ToLower(strings.Fields(rest + " x")[0])
}

// Harden rewrites an sshd_config. The managed directives go first, before
// any Include or Match, because sshd uses the first value it sees and a
// directive appended after a Match would only apply inside it. Global
// PasswordAuthentication/PermitRootLogin lines are dropped whatever their
// case or value; inside Match blocks only those saying "yes" are dropped.
func Harden(config string) string {
	var b strings.Builder
	b.WriteString(marker + "\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n")
	inMatch := false
	for _, line := range strings.SplitAfter(config, "\n") {
		if line == "" {
			continue
		}
		if strings.TrimSpace(line) == marker {
			continue
		}
		kw, val := keyword(line)
		if kw == "match" {
			inMatch = true
		}
		if managed[kw] && (!inMatch || val == "yes") {
			continue
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// Apply hardens sshd_config, installs the key as root's only authorized key
// and queues a non-blocking reload-or-restart: sshd is ordered after
// pre-nixos.service, so waiting for it from inside the oneshot deadlocks.
func Apply(ctx context.Context, c Config) error {
	if c.SSHDir == "" {
		c.SSHDir = "/etc/ssh"
	}
	if c.RootHome == "" {
		c.RootHome = "/root"
	}
	if c.KeyFile == "" {
		c.KeyFile = DefaultKeyFile
	}
	if len(c.Units) == 0 {
		c.Units = DefaultUnits
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Log.Info("pre_nixos.sshd.secure_ssh.start", "ssh_dir", c.Root.Path(c.SSHDir))
	cfgPath := path.Join(c.SSHDir, "sshd_config")
	old, err := c.Root.ReadFile(cfgPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", c.Root.Path(cfgPath), err)
	}
	// WriteFile renames over the path, replacing a symlink into a read-only
	// store with a regular file.
	if err := c.Root.WriteFile(cfgPath, []byte(Harden(string(old))), 0o644); err != nil {
		return err
	}
	key, err := c.Root.ReadFile(c.KeyFile)
	if err != nil || strings.TrimSpace(string(key)) == "" {
		c.Log.Error("pre_nixos.sshd.secure_ssh.error", "reason", "missing authorized key", "key_file", c.Root.Path(c.KeyFile))
		return fmt.Errorf("%w: %s is missing or empty", ErrNoKey, c.Root.Path(c.KeyFile))
	}
	sshDir := path.Join(c.RootHome, ".ssh")
	if err := c.Root.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(c.Root.Path(sshDir), 0o700); err != nil {
		return fmt.Errorf("securing %s: %w", c.Root.Path(sshDir), err)
	}
	ak := path.Join(sshDir, "authorized_keys")
	if err := c.Root.WriteFile(ak, key, 0o600); err != nil {
		return err
	}
	c.Log.Info("pre_nixos.sshd.secure_ssh.authorized_key_written", "path", c.Root.Path(ak))
	var errs []error
	for _, unit := range c.Units {
		cmd := execpolicy.C("systemctl", "reload-or-restart", "--no-block", unit)
		res, err := c.Runner.Run(ctx, cmd)
		if err := execpolicy.Check(res, err, cmd); err != nil {
			errs = append(errs, err)
			continue
		}
		c.Log.Info("pre_nixos.sshd.secure_ssh.finished", "unit", unit, "authorized_keys_path", c.Root.Path(ak))
		return nil
	}
	return fmt.Errorf("starting sshd: %w", errors.Join(errs...))
}
