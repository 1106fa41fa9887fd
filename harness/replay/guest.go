package replay

import (
	"fmt"
	"os"
	"path/filepath"
)

// NixOS's bash prompt (programs.bash.promptInit): an empty line, the colour, an OSC
// window title, `[user@host:dir]$`. The user and host are NixOS's, not this machine's,
// and `$`/`#` are fixed per shell because the replay's bash may run as the host's root.
const (
	userPS1 = `\n\[\033[1;32m\][\[\e]0;nixos@nixos: \w\a\]nixos@nixos:\w]$\[\033[0m\] `
	rootPS1 = `\n\[\033[1;31m\][\[\e]0;root@nixos: \w\a\]root@nixos:\w]#\[\033[0m\] `
)

// guestFiles are the rc files and the command stand-ins, by path under the guest's
// directory. REPLAY_UID is the uid the guest's `id` reports: 1000 for `nixos`, 0 after
// sudo.
var guestFiles = map[string]string{
	"userrc": "PS1='" + userPS1 + "'\nexport REPLAY_SESSION=$$\ncd \"$HOME\"\n",
	"rootrc": "PS1='" + rootPS1 + "'\ncd \"$HOME\"\n",
	// Bash 5.2 turns bracketed paste on for interactive shells; said explicitly so a
	// host /etc/inputrc cannot change what NixOS does.
	"inputrc": "set enable-bracketed-paste on\n",

	"bin/id": `#!/bin/sh
case "$1" in
-u) echo "$REPLAY_UID" ;;
-un|-nu) if [ "$REPLAY_UID" = 0 ]; then echo root; else echo nixos; fi ;;
-g) echo "$REPLAY_UID" ;;
"") if [ "$REPLAY_UID" = 0 ]; then echo 'uid=0(root) gid=0(root) groups=0(root)'; else echo 'uid=1000(nixos) gid=100(users) groups=100(users),1(wheel)'; fi ;;
*) exec /usr/bin/id "$@" ;;
esac
`,
	"bin/whoami": `#!/bin/sh
if [ "$REPLAY_UID" = 0 ]; then echo root; else echo nixos; fi
`,
	// NixOS's installer: wheel has passwordless sudo.
	"bin/sudo": `#!/bin/sh
case "$1" in
-i) exec env REPLAY_UID=0 HOME="$REPLAY_DIR/home/root" bash --noprofile --rcfile "$REPLAY_DIR/rootrc" -i ;;
-u) shift; u=$1; shift; uid=1000; [ "$u" = root ] && uid=0; exec env REPLAY_UID=$uid "$@" ;;
esac
exec env REPLAY_UID=0 "$@"
`,
	// root's password is empty on the console: su asks nothing.
	"bin/su": `#!/bin/sh
exec env REPLAY_UID=0 HOME="$REPLAY_DIR/home/root" bash --noprofile --rcfile "$REPLAY_DIR/rootrc" -i
`,
	// polkit refuses the user; root powers the guest off, which ends the "QEMU".
	"bin/poweroff": `#!/bin/sh
if [ "$REPLAY_UID" != 0 ]; then
	printf '\033[0;1;31mCall to PowerOff failed: Interactive authentication required.\033[0m\n' >&2
	exit 1
fi
printf '[  OK  ] Reached target System Power Off.\r\n[   42.000000] reboot: Power down\r\n'
: > "$REPLAY_DIR/powered-off"
# The login shell is the session leader: its death hangs up the whole session.
kill -KILL "$REPLAY_SESSION" 2>/dev/null
exit 0
`,
	"bin/systemctl": `#!/bin/sh
case "$1" in
poweroff|halt|reboot) exec poweroff ;;
esac
echo "replay guest: systemctl $* is not simulated" >&2
exit 1
`,
	// The host's kernel log level is not the guest's to change.
	"bin/dmesg": "#!/bin/sh\nexit 0\n",
}

// writeGuest lays out the guest's directory: rc files, stand-ins, homes.
func writeGuest(dir string) error {
	for _, d := range []string{"bin", "tmp", "home/nixos", "home/root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("replay: creating %s: %w", d, err)
		}
	}
	for name, body := range guestFiles {
		mode := os.FileMode(0o644)
		if filepath.Dir(name) == "bin" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			return fmt.Errorf("replay: writing %s: %w", name, err)
		}
	}
	return nil
}
