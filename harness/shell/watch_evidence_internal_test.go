package shell

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/ansi"
	"github.com/bootlab/bootlab/harness/console"
)

// watchOver plays before, starts a command's watch, plays text and, once the console
// has been quiet for longer than promptQuiet, returns what the watch concludes.
func watchOver(t *testing.T, before, text []byte, ps1 string, prof Profile) error {
	t.Helper()
	m, g, err := console.OpenPTY()
	require.NoError(t, err)
	con := console.New(m, console.Options{Normalizer: &ansi.Normalizer{}})
	t.Cleanup(func() { g.Close(); m.Close(); <-con.Done() })
	s := &Shell{con: con, prof: prof.withDefaults(), log: slog.New(slog.DiscardHandler), uid: 0, ps1: ps1}
	played := func(n int) {
		deadline := time.Now().Add(5 * time.Second)
		for con.Total() < int64(n) {
			require.True(t, time.Now().Before(deadline), "the console did not read what the guest wrote")
			time.Sleep(5 * time.Millisecond)
		}
	}
	_, err = g.Write(before)
	require.NoError(t, err)
	played(len(before))
	w := s.newWatch(con.Pos(), true)
	_, err = g.Write(text)
	require.NoError(t, err)
	played(len(before) + len(text))
	require.NoError(t, w.check("mount /dev/vda1 /mnt"), "nothing is concluded before the console is quiet")
	time.Sleep(promptQuiet + 100*time.Millisecond)
	return w.check("mount /dev/vda1 /mnt")
}

func consoleText(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "consoles", name))
	require.NoError(t, err)
	return b
}

// TestWatchdogNeedsEvidence (issue 26): the watchdog ends a command only on evidence
// that its shell is gone. On real NixOS console text a getty's banner and login prompt,
// a user's prompt after an automatic login and root's prompt are evidence; a
// prompt-shaped tail whose line began before the command was typed, and the prompt the
// shell itself had while a person used it, are not (the first failed a healthy `mount`).
func TestWatchdogNeedsEvidence(t *testing.T) {
	own := promptFor(2)
	typedAt := []byte("\r\n" + own) // the shell's prompt; the command is typed with echo off
	for _, c := range []struct {
		name         string
		before, text []byte
		prof         Profile
		want         string // "" = not gone
	}{
		{"nixos 25.05 getty", typedAt, consoleText(t, "nixos-25.05-getty-login.raw"), NixOS, "the console shows a login prompt (\"nixos login: \")"},
		{"nixos 24.05 getty", typedAt, consoleText(t, "nixos-24.05-getty-login.raw"), NixOS, "the console shows a login prompt"},
		{"nixos 25.05 autologin prompt", typedAt, consoleText(t, "nixos-25.05-autologin-user-prompt.raw"), NixOS, "a shell prompt that is not the harness's came up (\"[nixos@nixos:~]$ \")"},
		{"nixos 24.05 user prompt", typedAt, consoleText(t, "nixos-24.05-user-prompt.raw"), NixOS, "[nixos@nixos:~]$"},
		{"nixos 25.05 root prompt", typedAt, consoleText(t, "nixos-25.05-sudo-root-prompt.raw"), NixOS, "[root@nixos:~]#"},
		{"parent's configured prompt on the same line", typedAt, []byte(promptFor(1)), Mini, "the prompt of the shell it was started from came back (\"bootlab-1$ \")"},
		{"busybox respawned", typedAt, []byte("\r\nPlease press Enter to activate this console. \r\n~ # "), DebianInstaller, "(\"~ # \")"},
		// No evidence:
		{"tail of its own late prompt", []byte("\r\nb"), []byte("ootlab-2$ "), Fixture, ""},
		{"tail of a nixos prompt begun before the command", consoleText(t, "nixos-24.05-user-prompt.raw")[:35], consoleText(t, "nixos-24.05-user-prompt.raw")[35:], NixOS, ""},
		{"its own prompt from the debug session", typedAt, []byte("\r\n[bootlab debug] root@mini:~# "), Mini, ""},
		{"its own prompt again", typedAt, []byte("\r\n" + own), Mini, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := watchOver(t, c.before, c.text, own, c.prof)
			if c.want == "" {
				require.NoError(t, err)
				return
			}
			var gone *ShellGoneError
			require.ErrorAs(t, err, &gone)
			require.Contains(t, gone.What, c.want)
		})
	}
}
