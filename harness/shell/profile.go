// Package shell gets a verified root shell on a guest's serial console and runs framed
// commands there.
//
// Login is a small state machine driven by an image Profile: it answers a login prompt
// (or notices an automatic login or an already-open shell), configures the shell for
// automation, proves who it is with a framed `id -u`, and escalates with the profile's
// methods in order (sudo -i, su -) until `id -u` says 0. Whether the shell is root is
// never inferred from a `#` in a prompt.
package shell

import (
	"fmt"
	"regexp"
	"time"
)

// Method is a way to become root.
type Method string

// Escalation methods.
const (
	Sudo Method = "sudo -i"
	Su   Method = "su -"
)

// Profile describes how an image's console behaves.
type Profile struct {
	Name string
	// LoginUser is typed at a `login:` prompt. Empty means the image logs a user in by
	// itself (auto-login) and the harness only waits for a shell.
	LoginUser     string
	LoginPassword string
	// SudoPassword answers sudo's prompt; RootPassword answers su's (and a root login's).
	SudoPassword string
	RootPassword string
	// Escalation lists the methods to try, in order, when the login shell is not root.
	Escalation []Method

	// Prompts, matched against the last line of normalised console text. Defaults cover
	// Debian, NixOS and busybox.
	LoginPrompt    *regexp.Regexp
	ShellPrompt    *regexp.Regexp
	PasswordPrompt *regexp.Regexp
	// AutoLoginGrace is how long to look for "(automatic login)" after a login prompt
	// before typing a user name (default 1 s).
	AutoLoginGrace time.Duration

	// QuietKernel runs `dmesg -n 1` once root, keeping printk off the console. Framed
	// output survives kernel noise either way; this only keeps the transcript readable.
	QuietKernel bool
	// Wakeup is typed when nothing is on the console after WakeupAfter (an Enter makes a
	// getty that printed its prompt before the harness attached print it again).
	WakeupAfter time.Duration
}

// Default prompt patterns. The shell pattern accepts user and root prompts of the usual
// shapes (`user@host:~$ `, `[nixos@nixos:~]$ `, `root@host:~# `, `/ # `, `~ $ `).
var (
	DefaultLoginPrompt    = regexp.MustCompile(`(?i)login: ?$`)
	DefaultShellPrompt    = regexp.MustCompile(`[$#] ?$`)
	DefaultPasswordPrompt = regexp.MustCompile(`(?i)(password|passwort|mot de passe)( for [^:]+)?: ?$`)
	autoLoginBanner       = regexp.MustCompile(`\(automatic login\)`)
	loginIncorrect        = regexp.MustCompile(`(?i)(login incorrect|authentication failure|sorry, try again|incorrect password)`)
)

func (p *Profile) withDefaults() Profile {
	q := *p
	if q.LoginPrompt == nil {
		q.LoginPrompt = DefaultLoginPrompt
	}
	if q.ShellPrompt == nil {
		q.ShellPrompt = DefaultShellPrompt
	}
	if q.PasswordPrompt == nil {
		q.PasswordPrompt = DefaultPasswordPrompt
	}
	if q.AutoLoginGrace <= 0 {
		q.AutoLoginGrace = time.Second
	}
	if q.Escalation == nil {
		q.Escalation = []Method{Sudo, Su}
	}
	if q.WakeupAfter <= 0 {
		q.WakeupAfter = 15 * time.Second
	}
	return q
}

// Validate rejects profiles that cannot work.
func (p *Profile) Validate() error {
	for _, m := range p.Escalation {
		if m != Sudo && m != Su {
			return fmt.Errorf("profile %s: unknown escalation method %q (want %q or %q)", p.Name, m, Sudo, Su)
		}
	}
	return nil
}

// Built-in profiles for the images bootlab knows.
var (
	// Mini is the busybox initramfs image: a getty login prompt, user/user, and su with
	// root/root.
	Mini = Profile{Name: "mini", LoginUser: "user", LoginPassword: "user", RootPassword: "root", Escalation: []Method{Su}, QuietKernel: true}
	// Fixture is the Debian live ISO: `bootlab` is logged in automatically and has
	// passwordless sudo; root has an empty password.
	Fixture = Profile{Name: "fixture", Escalation: []Method{Sudo, Su}, QuietKernel: true}
	// NixOSInstaller is an upstream NixOS installer ISO: `nixos` is logged in
	// automatically with passwordless sudo; root has an empty password.
	NixOSInstaller = Profile{Name: "nixos", Escalation: []Method{Sudo, Su}, QuietKernel: true}
)

// Profiles by name, for flags.
func ByName(name string) (Profile, error) {
	for _, p := range []Profile{Mini, Fixture, NixOSInstaller} {
		if p.Name == name {
			return p, nil
		}
	}
	return Profile{}, fmt.Errorf("unknown image profile %q (known: mini, fixture, nixos)", name)
}
