package main

import (
	"bytes"
	"encoding/json"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/isoinspect/isotest"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/replay"
)

const consoles = "../../replay/testdata/nixos-consoles/"

// withReplay makes `bootlab run` start a replay guest of log instead of QEMU.
func withReplay(t *testing.T, log string) string {
	t.Helper()
	old := launcher
	launcher = replay.Launcher{Log: consoles + log}
	t.Cleanup(func() { launcher = old })
	t.Setenv("BOOTLAB_QEMU", "qemu-replay")
	// A stand-in the replay guest does not read; an ISO9660 image without a boot menu,
	// so bootlab boots it through the firmware (a file that is no ISO is refused).
	b := isotest.New("NIXOS_STANDIN")
	b.Dir(b.Root, b.Root, b.File("README.TXT;1", []byte("stand-in\n")))
	return b.Write(t, "nixos.iso")
}

func onlyRun(t *testing.T, notes string) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(notes, "*", runrec.MetadataFile))
	require.NoError(t, err)
	require.Len(t, dirs, 1, "one run directory under %s", notes)
	return filepath.Dir(dirs[0])
}

// TestRunOnRecordedNixOSConsole: `bootlab run --iso X --profile nixos` on NixOS 25.05's
// recorded console logs in, runs a command as root, powers off, passes; `bootlab log
// --plain` then prints the boot readably: stage banners, systemd's welcome, the
// prompts, without escape sequences or CRs.
func TestRunOnRecordedNixOSConsole(t *testing.T) {
	iso := withReplay(t, "nixos-25.05-autoinstall-full-boot.serial.log")
	notes := t.TempDir()
	var stdout, stderr fakeguest.Buffer // bootlab writes progress from several goroutines
	code := Main([]string{
		"run", "--iso", iso, "--profile", "nixos", "--accel", "tcg", "--verify=false", "--notes", notes, "--cmd", "id -un",
		"--disk", "16", // small: the run's artefact catalogue hashes the disk image
	}, &stdout, &stderr)
	require.Equal(t, exitPass, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	require.Contains(t, stdout.String(), "$ id -un\nroot\n[exit 0")
	require.Contains(t, stdout.String(), "verdict: pass")
	for _, ms := range []string{"stage1", "stage2", "init", "login_prompt", "root_shell"} {
		require.Contains(t, stdout.String(), "  "+ms+" ", "milestone %s in the summary", ms)
	}
	dir := onlyRun(t, notes)
	m, err := runrec.ReadMetadata(dir)
	require.NoError(t, err)
	require.Equal(t, runrec.Pass, m.Outcome)

	var plain, perr bytes.Buffer
	require.Equal(t, exitPass, Main([]string{"log", "--plain", dir}, &plain, &perr), perr.String())
	p := plain.String()
	for _, want := range []string{"<<< NixOS Stage 1 >>>", "<<< NixOS Stage 2 >>>", "Welcome to NixOS 25.05 (Warbler)!",
		"nixos login: nixos (automatic login)", "[nixos@nixos:~]$ ", "[root@nixos:~]# "} {
		require.Contains(t, p, want)
	}
	require.NotContains(t, p, "\x1b")
	require.NotContains(t, p, "\r")
	require.NotContains(t, p, "0;nixos@nixos", "the OSC window title is not text")
	var raw bytes.Buffer
	require.Equal(t, exitPass, Main([]string{"log", dir}, &raw, &perr))
	require.Contains(t, raw.String(), "\x1b]0;nixos@nixos: ~\a", "without --plain the bytes are as the guest sent them")
}

// TestRunQEMUDiskLockIsEnvironmentError: QEMU refusing to start on a locked disk image
// (the third recording) ends `bootlab run` with exit status 2 and QEMU's own words, and
// the run is recorded as an environment error, not a failed boot.
func TestRunQEMUDiskLockIsEnvironmentError(t *testing.T) {
	iso := withReplay(t, "qemu-disk-lock-failure.serial.log")
	notes := t.TempDir()
	var stdout, stderr fakeguest.Buffer // bootlab writes progress from several goroutines
	code := Main([]string{"run", "--iso", iso, "--accel", "tcg", "--notes", notes, "--disk", "16"}, &stdout, &stderr)
	require.Equal(t, exitUsage, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	require.Contains(t, stderr.String(), `Failed to get "write" lock`)
	require.Contains(t, stderr.String(), "Is another process using the image")
	require.Contains(t, stderr.String(), "exit status: exit status 1")
	m, err := runrec.ReadMetadata(onlyRun(t, notes))
	require.NoError(t, err)
	require.Equal(t, runrec.Error, m.Outcome)
	require.True(t, strings.Contains(m.Error, "locked by another process"), m.Error)
}

// TestRunJSON: `bootlab run --json` prints one JSON object on stdout, with the verdict,
// the run directory, the milestones and each --cmd's output and status, and nothing
// else there (the command transcript goes to stderr); a run whose QEMU never started
// prints its verdict too, and exits 2.
func TestRunJSON(t *testing.T) {
	iso := withReplay(t, "nixos-25.05-autoinstall-full-boot.serial.log")
	notes := t.TempDir()
	var stdout, stderr fakeguest.Buffer
	code := Main([]string{"run", "--json", "--iso", iso, "--profile", "nixos", "--accel", "tcg", "--verify=false",
		"--notes", notes, "--cmd", "id -un", "--cmd", "(exit 3)", "--disk", "16"}, &stdout, &stderr)
	require.Equal(t, exitPass, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	var got runJSON
	dec := json.NewDecoder(strings.NewReader(stdout.String()))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&got), "stdout is one JSON object:\n%s", stdout.String())
	require.False(t, dec.More(), "nothing after the object")
	require.Equal(t, runrec.Pass, got.Verdict)
	require.Equal(t, onlyRun(t, notes), got.RunDir)
	require.Equal(t, filepath.Join(got.RunDir, runrec.ReportFile), got.Report)
	require.Len(t, got.Commands, 2)
	require.Equal(t, commandJSON{Command: "id -un", Output: "root\n", ExitStatus: 0, Seconds: got.Commands[0].Seconds}, got.Commands[0])
	require.Equal(t, 3, got.Commands[1].ExitStatus)
	var names []string
	for _, m := range got.Milestones {
		names = append(names, m.Name)
	}
	require.Subset(t, names, []string{"stage1", "login_prompt", "root_shell"})
	require.Contains(t, stderr.String(), "$ id -un\nroot\n[exit 0", "the transcript is for people, on stderr")

	// The stable field names, as docs/running.md lists them.
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &raw))
	for _, k := range []string{"verdict", "run_directory", "report", "milestones", "commands"} {
		require.Contains(t, raw, k)
	}

	iso = withReplay(t, "qemu-disk-lock-failure.serial.log")
	notes = t.TempDir()
	stdout.Reset()
	stderr.Reset()
	code = Main([]string{"run", "--json", "--iso", iso, "--accel", "tcg", "--notes", notes, "--disk", "16"}, &stdout, &stderr)
	require.Equal(t, exitUsage, code, "stderr:\n%s", stderr.String())
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &got), "stdout:\n%s", stdout.String())
	require.Equal(t, runrec.Error, got.Verdict)
	require.Contains(t, got.Error, "locked by another process")
}

// TestReportSummaryJSON: `bootlab report --summary --json` prints the runs under the
// notes root as one JSON object, with the fields docs/running.md lists.
func TestReportSummaryJSON(t *testing.T) {
	iso := withReplay(t, "nixos-25.05-autoinstall-full-boot.serial.log")
	notes := t.TempDir()
	var stdout, stderr fakeguest.Buffer
	code := Main([]string{"run", "--iso", iso, "--profile", "nixos", "--accel", "tcg", "--verify=false", "--notes", notes, "--disk", "16"}, &stdout, &stderr)
	require.Equal(t, exitPass, code, "stderr:\n%s", stderr.String())
	var out, errb bytes.Buffer
	require.Equal(t, exitPass, Main([]string{"report", "--summary", "--json", "--notes", notes}, &out, &errb), errb.String())
	var got summaryJSON
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&got))
	require.Len(t, got.Runs, 1)
	r := got.Runs[0]
	require.Equal(t, filepath.Base(onlyRun(t, notes)), r.Run)
	require.Equal(t, runrec.Pass, r.Outcome)
	require.Equal(t, "tcg", r.Accel)
	require.False(t, r.Started.IsZero())
	require.Contains(t, r.Milestones, "login_prompt")
	require.Contains(t, r.Milestones, "root_shell")
	require.NotNil(t, r.Scenarios, "an empty list, not null")

	errb.Reset()
	require.Equal(t, exitUsage, Main([]string{"report", "--json", "--notes", notes}, &out, &errb))
	require.Contains(t, errb.String(), "want one of")
	errb.Reset()
	require.Equal(t, exitUsage, Main([]string{"report", "--trend", "--json", "--notes", notes}, &out, &errb))
	require.Contains(t, errb.String(), "--json goes with --summary")
}
