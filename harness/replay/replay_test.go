package replay_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/ansi"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/replay"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// The recordings, copied unedited from the shared NixOS console captures (their README
// says what each shows).
const (
	full25   = "testdata/nixos-consoles/nixos-25.05-autoinstall-full-boot.serial.log"
	iso24    = "testdata/nixos-consoles/nixos-24.05-isolinux-autologin.serial.log"
	diskLock = "testdata/nixos-consoles/qemu-disk-lock-failure.serial.log"
)

func TestParseSplitsAtTheAutomaticLogin(t *testing.T) {
	for _, tc := range []struct {
		log, tail string
	}{
		// The getty's line end is the guest's and is kept.
		{full25, "nixos login: nixos (automatic login)\r\r\n"},
		// Here the old harness's typing follows on the same line: not the guest's.
		{iso24, "nixos login: nixos (automatic login)"},
	} {
		b, err := os.ReadFile(tc.log)
		require.NoError(t, err)
		r := replay.Parse(b)
		require.True(t, r.Login, tc.log)
		require.False(t, r.QEMUError)
		require.True(t, bytes.HasSuffix(r.Prefix, []byte(tc.tail)), "%s ends %q", tc.log, r.Prefix[max(0, len(r.Prefix)-60):])
		require.NotContains(t, string(r.Prefix), "PRE-NIXOS>", "none of the old harness's session is played")
	}
	b, err := os.ReadFile(diskLock)
	require.NoError(t, err)
	r := replay.Parse(b)
	require.True(t, r.QEMUError)
	require.False(t, r.Login)
}

// spec is a VM whose "QEMU" replays log.
func spec(t *testing.T, log string, prof shell.Profile) vm.Spec {
	iso := filepath.Join(t.TempDir(), "nixos.iso")
	require.NoError(t, os.WriteFile(iso, []byte("not really an ISO"), 0o644))
	s := vm.Spec{Image: vm.Image{Name: "nixos-replay", ISO: iso, Profile: prof}, Accel: qemu.AccelTCG,
		Launcher: replay.Launcher{Log: log, LineDelay: time.Millisecond}, Binary: "qemu-replay", Timeouts: vm.BaseTimeouts()}
	s.Timeouts.Login = 30 * time.Second
	s.Timeouts.Step = 10 * time.Second
	s.Timeouts.Command = 10 * time.Second
	s.Timeouts.Stop = qemu.StopTimeouts{Guest: 5 * time.Second, Powerdown: 100 * time.Millisecond, Quit: 100 * time.Millisecond, Term: 2 * time.Second, Kill: 2 * time.Second}
	return s
}

func bootReplay(t *testing.T, log string) (*vm.VM, *shell.Shell) {
	t.Helper()
	dir := t.TempDir()
	v, err := vm.Start(context.Background(), dir, spec(t, log, shell.NixOS))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = v.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sh, err := v.Login(ctx)
	require.NoError(t, err, "logging in with the nixos profile; serial:\n%s", tail(t, dir))
	return v, sh
}

func tail(t *testing.T, dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, vm.SerialLog))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func milestones(v *vm.VM) []string {
	var out []string
	for _, m := range v.Milestones() {
		out = append(out, m.Name)
	}
	return out
}

// TestNixOSLoginOnRecordedConsole: the nixos profile meets NixOS 25.05's real boot and
// auto-login, then a bash with NixOS's prompts: it becomes root with `sudo -i`, runs
// framed commands, records the NixOS boot stages as milestones, and powers off as root
// after `poweroff` was refused for the user.
func TestNixOSLoginOnRecordedConsole(t *testing.T) {
	v, sh := bootReplay(t, full25)
	require.Equal(t, 0, sh.UID())
	require.NotEmpty(t, sh.Attempts)
	require.Equal(t, shell.Sudo, sh.Attempts[0].Method, "the first escalation tried is sudo -i")
	require.True(t, sh.Attempts[0].OK, "sudo -i needs no password on NixOS: %+v", sh.Attempts[0])
	require.Equal(t, shell.TransportConsole, sh.Transport(), "the replay has no virtio-serial port")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := v.Run(ctx, "echo hello from $(id -un); printf 'a\\nb\\n'")
	require.NoError(t, err)
	require.Equal(t, "hello from root\na\nb\n", string(r.Output))
	r, err = v.Run(ctx, "sudo -u nixos poweroff", shell.AllowFail())
	require.NoError(t, err)
	require.Equal(t, 1, r.ExitStatus, "the user may not power off")
	require.Contains(t, string(r.Output), "Interactive authentication required")

	// The first prompt was recognised as bash printed it: no Enter was needed to make it
	// print another (the recorded cursor-position queries' answers did not reach bash).
	hl, err := os.ReadFile(filepath.Join(v.Dir(), vm.HarnessLog))
	require.NoError(t, err)
	require.NotContains(t, string(hl), "shell.wakeup")
	require.NotContains(t, string(hl), "syntax error")

	ms := strings.Join(milestones(v), " ")
	for _, want := range []string{"spawn", "first_output", "stage1", "stage2", "init", "login_prompt", "root_shell"} {
		require.Contains(t, ms, want)
	}
	require.NotContains(t, ms, "kernel", "NixOS 25.05 booted quietly: no kernel banner before the login")

	serial, err := os.ReadFile(filepath.Join(v.Dir(), vm.SerialLog))
	require.NoError(t, err)
	s := string(serial)
	// The recording, byte for byte, then NixOS's prompts as bash printed them.
	rec, err := os.ReadFile(full25)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(s, string(replay.Parse(rec).Prefix)), "serial.log starts with the recorded boot")
	require.Contains(t, s, "\x1b[?2004h", "bracketed paste is on until the harness turns it off")
	require.Contains(t, s, "\n\x1b[1;32m[\x1b]0;nixos@nixos: ~\anixos@nixos:~]$\x1b[0m ", "the user prompt: empty line, green, OSC title")
	require.Contains(t, s, "\n\x1b[1;31m[\x1b]0;root@nixos: ~\aroot@nixos:~]#\x1b[0m ", "sudo -i's root prompt: red")

	stage, err := v.Stop(context.Background())
	require.NoError(t, err)
	require.Equal(t, qemu.StopGuest, stage, "the profile's poweroff, typed as root, ends the guest")
	require.Equal(t, "exit status 0", v.ExitStatus())
	serial, err = os.ReadFile(filepath.Join(v.Dir(), vm.SerialLog))
	require.NoError(t, err)
	require.Contains(t, string(serial), "reboot: Power down")
}

// TestNixOSInstallerISOLINUXRecording: the 24.05 installer's console (ISOLINUX menu in
// DEC line graphics, then the auto-login) normalises to readable text and the profile
// logs in after it.
func TestNixOSInstallerISOLINUXRecording(t *testing.T) {
	v, sh := bootReplay(t, iso24)
	require.Equal(t, 0, sh.UID())
	serial, err := os.ReadFile(filepath.Join(v.Dir(), vm.SerialLog))
	require.NoError(t, err)
	var n ansi.Normalizer
	tr := string(n.Write(serial)) + string(n.Flush())
	require.Contains(t, tr, "<<< Welcome to NixOS 24.05.20241230.b134951 (x86_64) - ttyS0 >>>")
	require.Contains(t, tr, "nixos login: nixos (automatic login)")
	require.Contains(t, tr, "[nixos@nixos:~]$", "the prompt without its colours and title")
	require.NotContains(t, tr, "\x1b", "no escape sequence survives normalisation")
	require.NotContains(t, tr, "0;nixos@nixos", "the OSC window title is not text")
}

// TestDiskLockIsQEMUsOwnError: the third recording is QEMU refusing to start; the VM
// reports QEMU's own words and exit status as a start error, with no guest and no
// boot milestone.
func TestDiskLockIsQEMUsOwnError(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, diskLock, shell.NixOS)
	disk := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(disk, make([]byte, 4096), 0o644))
	s.Disks = []vm.DiskSpec{{Path: disk}}
	v, err := vm.Start(context.Background(), dir, s)
	require.Error(t, err)
	var se *qemu.StartError
	require.True(t, errors.As(err, &se), "a start error, not a boot failure: %v", err)
	require.Contains(t, se.Stderr, `Failed to get "write" lock`)
	require.Contains(t, se.Stderr, "Is another process using the image")
	require.Equal(t, "exit status 1", se.ExitStatus)
	require.Contains(t, se.Reason, "locked by another process")
	require.NotNil(t, v)
	stderr, rerr := os.ReadFile(filepath.Join(dir, "qemu-stderr.log"))
	require.NoError(t, rerr)
	want, _ := os.ReadFile(diskLock)
	require.Equal(t, string(want), string(stderr), "QEMU's words, kept unedited in the run directory")
	serial, _ := os.ReadFile(filepath.Join(dir, vm.SerialLog))
	require.Empty(t, serial, "no guest wrote anything")
}

// The replay's prompt is what the ansi normaliser and the nixos profile see as a shell
// prompt: the last normalised line ends in `$ `.
func TestNixOSPromptNormalisesToAShellPrompt(t *testing.T) {
	var n ansi.Normalizer
	raw := "\x1b[?2004h\r\r\r\n\x1b[1;32m[\x1b]0;nixos@nixos: ~\x07nixos@nixos:~]$\x1b[0m "
	out := string(n.Write([]byte(raw))) + string(n.Flush())
	last := out[strings.LastIndexByte(out, '\n')+1:]
	require.Equal(t, "[nixos@nixos:~]$ ", last)
	require.Regexp(t, shell.DefaultShellPrompt, last)
}
