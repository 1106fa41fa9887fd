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
	"path"
	"regexp"
	"strings"
	"time"
)

// Method is a way to become root.
type Method string

// Escalation methods.
const (
	Sudo Method = "sudo -i"
	Su   Method = "su -"
)

// Profile describes an image: how its console behaves (login, escalation, prompts) and
// the image-specific facts the checks look for (harness/verify, the scenarios, `bootlab
// run --verify`), so one suite runs against the Debian fixture and a NixOS ISO alike.
// Nothing outside a profile may name a unit or path that differs between images; a unit
// test scans the scenarios for such literals.
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

	// QuietKernel runs `dmesg -n 1` once root, keeping printk off the console. Framed
	// output survives kernel noise either way; this only keeps the transcript readable.
	QuietKernel bool
	// Wakeup is typed when nothing is on the console after WakeupAfter (an Enter makes a
	// getty that printed its prompt before the harness attached print it again).
	WakeupAfter time.Duration

	// Image facts. Empty means the image has no such thing (mini: no sshd, no
	// pre-nixos).

	// SSHUnit is the OpenSSH server's unit: Debian's `ssh.service`, NixOS's
	// `sshd.service` (services.openssh).
	SSHUnit string
	// PreNixosUnit is the provisioner's unit, and PreNixosDone the state `systemctl
	// is-active` reports once it succeeded ("active": RemainAfterExit=yes on every image,
	// see docs/decisions.md).
	PreNixosUnit, PreNixosDone string
	// ISOKey matches where the embedded root key lives on the ISO, as isoinspect reports
	// it: "layer:path" (layer is the squashfs file on the ISO, "" for the ISO itself).
	ISOKey *regexp.Regexp
	// GuestKey is the embedded key's path in the running system; AuthorizedKeys is
	// where pre-nixos installs it for root; HostKey is sshd's ed25519 public host key,
	// which SSH is pinned to after reading it over the console.
	GuestKey, AuthorizedKeys, HostKey string
	// Poweroff is typed as root to stop the guest (vm.Image.Poweroff overrides it;
	// "poweroff" when both are empty).
	Poweroff string
	// IgnoresACPIPowerdown: the guest does nothing on QEMU's ACPI power button (busybox
	// init), so the shutdown skips that stage instead of waiting it out.
	IgnoresACPIPowerdown bool
	// BootPhases are console lines that mark how far a boot got (milestones in the run
	// record); nil means DefaultBootPhases.
	BootPhases []BootPhase
}

// BootPhase names a boot milestone and the console text (normalised) that marks it.
type BootPhase struct {
	Name string
	Re   *regexp.Regexp
}

// DefaultBootPhases split a boot into firmware/bootloader until the kernel's banner, the
// kernel until it hands over to init, then init until a login prompt.
var DefaultBootPhases = []BootPhase{
	{"kernel", regexp.MustCompile(`Linux version [0-9]`)},
	{"init", regexp.MustCompile(`Run /\S+ as init process|systemd\[1\]: |Welcome to |Starting init`)},
}

// NixOSBootPhases are NixOS's own stage banners and systemd's welcome. A quiet NixOS
// boot prints no kernel banner on the serial line, so the stages are what says where a
// stuck boot stopped: in the initrd (stage 1), activation (stage 2), or systemd.
var NixOSBootPhases = []BootPhase{
	{"kernel", regexp.MustCompile(`Linux version [0-9]`)},
	{"stage1", regexp.MustCompile(`<<< NixOS Stage 1 >>>`)},
	{"stage2", regexp.MustCompile(`<<< NixOS Stage 2 >>>`)},
	{"init", regexp.MustCompile(`Welcome to NixOS`)},
}

// PoweroffCommand is what to type as root to power the guest off; override wins.
func (p *Profile) PoweroffCommand(override string) string {
	switch {
	case override != "":
		return override
	case p.Poweroff != "":
		return p.Poweroff
	}
	return "poweroff"
}

// Phases are the profile's boot phases, or the defaults.
func (p *Profile) Phases() []BootPhase {
	if p.BootPhases != nil {
		return p.BootPhases
	}
	return DefaultBootPhases
}

// ImageNames are the profile's unit names and paths: what a scenario must take from the
// profile instead of spelling out (see the scenario literal test).
func (p *Profile) ImageNames() []string {
	var out []string
	for _, s := range []string{p.SSHUnit, p.PreNixosUnit, p.GuestKey, p.AuthorizedKeys, p.HostKey} {
		if s != "" {
			out = append(out, s)
		}
	}
	if p.GuestKey != "" {
		out = append(out, path.Base(p.GuestKey))
	}
	return out
}

// Default prompt patterns. The shell pattern accepts user and root prompts of the usual
// shapes (`user@host:~$ `, `[nixos@nixos:~]$ `, `root@host:~# `, `/ # `, `~ $ `).
var (
	DefaultLoginPrompt    = regexp.MustCompile(`(?i)login: ?$`)
	DefaultShellPrompt    = regexp.MustCompile(`[$#] ?$`)
	DefaultPasswordPrompt = regexp.MustCompile(`(?i)(password|passwort|mot de passe)( for [^:]+)?: ?$`)
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

// preNixosImage are the facts shared by the images that run pre-nixos: the provisioner
// and OpenSSH put their files in the same places on Debian and NixOS.
func preNixosImage(p Profile) Profile {
	p.PreNixosUnit = "pre-nixos.service"
	p.PreNixosDone = "active"
	p.GuestKey = "/etc/pre-nixos/root_key.pub"
	p.AuthorizedKeys = "/root/.ssh/authorized_keys"
	p.HostKey = "/etc/ssh/ssh_host_ed25519_key.pub"
	p.Poweroff = "systemctl poweroff"
	return p
}

// Built-in profiles for the images bootlab knows.
var (
	// Mini is the busybox initramfs image: a getty login prompt, user/user, and su with
	// root/root.
	Mini = Profile{Name: "mini", LoginUser: "user", LoginPassword: "user", RootPassword: "root", Escalation: []Method{Su}, QuietKernel: true,
		Poweroff: "poweroff", IgnoresACPIPowerdown: true}
	// Fixture is the Debian live ISO: `bootlab` is logged in automatically and has
	// passwordless sudo; root has an empty password. The key is in the live squashfs.
	Fixture = preNixosImage(Profile{Name: "fixture", Escalation: []Method{Sudo, Su}, QuietKernel: true,
		SSHUnit: "ssh.service", ISOKey: regexp.MustCompile(`\.squashfs:etc/pre-nixos/root_key\.pub$`)})
	// NixOS is a NixOS ISO (the flake's bootImage or an upstream installer): `nixos` is
	// logged in automatically on ttyS0 with passwordless sudo; root has an empty
	// password; `poweroff` as `nixos` is refused by polkit. Its prompts (green
	// `[nixos@nixos:~]$`, red `[root@nixos:~]#`, each after an empty line and an OSC
	// window title) match the default shell prompt once normalised. The key is an
	// environment.etc entry: a store file in nix-store.squashfs (or /etc in an unpacked
	// layout), never a plain etc/ path on the live medium.
	NixOS = preNixosImage(Profile{Name: "nixos", Escalation: []Method{Sudo, Su}, QuietKernel: true,
		SSHUnit: "sshd.service", ISOKey: regexp.MustCompile(`(etc/pre-nixos/|-)root_key\.pub$`), BootPhases: NixOSBootPhases})
	// NixOSInstaller is the old name of NixOS.
	NixOSInstaller = NixOS
	// DebianInstaller is the Debian installer's shell (netboot kernel and initrd):
	// already root, nothing to log in to and no way to escalate (an empty list, not
	// nil, which would mean the defaults), busybox ash's `~ # ` prompt, no systemd and
	// no ACPI power button handler worth waiting for.
	DebianInstaller = Profile{Name: "debian-installer", ShellPrompt: regexp.MustCompile(`~ # ?$`), Escalation: []Method{}, QuietKernel: true,
		IgnoresACPIPowerdown: true}
)

// Builtin lists the built-in profiles.
func Builtin() []Profile { return []Profile{Mini, Fixture, NixOS, DebianInstaller} }

// ByName returns a built-in profile, for flags.
func ByName(name string) (Profile, error) {
	var names []string
	for _, p := range Builtin() {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Profile{}, fmt.Errorf("unknown image profile %q (known: %s)", name, strings.Join(names, ", "))
}
