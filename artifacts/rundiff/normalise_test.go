package rundiff

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// Each pair is the same journal message as two boots print it: the kinds of value that
// change on every boot without anything being wrong. Real kernel logs of two fixture
// boots are in testdata/serial (TestRealKernelLogsNormaliseAlike).
var sameAcrossBoots = [][2]string{
	{"[    5.123456] fixture systemd[1]: Started ssh.service - OpenBSD Secure Shell server.", "[   17.000001] fixture systemd[1]: Started ssh.service - OpenBSD Secure Shell server."},
	{"[   12.345678] fixture sshd[812]: Server listening on 0.0.0.0 port 22.", "[   13.111111] fixture sshd[790]: Server listening on 0.0.0.0 port 22."},
	{"Dec 02 05:01:02 fixture systemd-networkd[301]: lan: DHCPv4 address 10.0.2.15/24, gateway 10.0.2.2 acquired from 10.0.2.2", "Dec 03 11:59:59 fixture systemd-networkd[299]: lan: DHCPv4 address 10.0.2.16/24, gateway 10.0.2.2 acquired from 10.0.2.2"},
	{"[    9.1] fixture systemd-fsck[402]: /dev/vda2: clean, 11/262144 files", "[    8.7] fixture systemd-fsck[417]: /dev/vda2: clean, 11/262144 files"},
	{"2026-12-02T05:01:02+0000 fixture kernel: EXT4-fs (dm-0): mounted filesystem 0b3c8f0e-5a2d-4e8f-9d1c-2f6a7b8c9d0e r/w with ordered data mode", "2026-12-02T06:01:02+0000 fixture kernel: EXT4-fs (dm-0): mounted filesystem 7e1d2c3b-4a5f-4678-9abc-def012345678 r/w with ordered data mode"},
	{"[    3.2] fixture kernel: virtio_net virtio0 lan: renamed from eth0, MAC 52:54:00:12:34:56", "[    3.9] fixture kernel: virtio_net virtio0 lan: renamed from eth0, MAC 52:54:00:ab:cd:ef"},
	{"[    4.0] fixture systemd[1]: Finished systemd-tmpfiles-setup.service in 1.234s.", "[    4.8] fixture systemd[1]: Finished systemd-tmpfiles-setup.service in 987ms."},
	{"[    4.0] fixture kernel: BUG: unable to handle page fault for address: ffff8880deadbeef", "[    4.0] fixture kernel: BUG: unable to handle page fault for address: ffff88801234abcd"},
	{"[    6.0] fixture systemd[1]: Started run-u12.service - /usr/bin/true.", "[    6.0] fixture systemd[1]: Started run-r3f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c.service - /usr/bin/true."},
	{"[    6.0] fixture mkfs[512]: created /tmp/tmp.Ab3dE5fG7h", "[    6.0] fixture mkfs[530]: created /tmp/tmp.Zy9xW8vU7t"},
	{"[    6.0] fixture systemd[1]: Started session-1.scope - Session 1 of User root.", "[    6.0] fixture systemd[1]: Started session-3.scope - Session 3 of User root."},
	{"[    6.0] fixture systemd-networkd[301]: lan: IPv6 fe80::5054:ff:fe12:3456/64", "[    6.0] fixture systemd-networkd[301]: lan: IPv6 fe80::5054:ff:feab:cdef/64"},
	{`dev-disk-by\x2duuid-1A2B\x2d3C4D.device loaded active plugged /dev/disk/by-uuid/1A2B-3C4D`, `dev-disk-by\x2duuid-9F8E\x2d7D6C.device loaded active plugged /dev/disk/by-uuid/9F8E-7D6C`},
	{`dev-disk-by\x2did-lvm\x2dpv\x2duuid\x2dAbC123\x2dd3f4\x2dG5h6\x2dI7j8\x2dK9l0\x2dM1n2\x2dOp3Q45.device loaded active plugged`, `dev-disk-by\x2did-lvm\x2dpv\x2duuid\x2dZyX987\x2dw6v5\x2dU4t3\x2dS2r1\x2dQ0p9\x2dO8n7\x2dMl6K54.device loaded active plugged`},
	{`dev-disk-by\x2did-dm\x2duuid\x2dLVM\x2dq1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4n5m6q7w8e9r0t1y2u3.device`, `dev-disk-by\x2did-dm\x2duuid\x2dLVM\x2dZ9x8c7v6b5n4m3a2s1d0f9g8h7j6k5l4q3w2e1r0t9y8u7i6o5p4a3s2d1f0g9h8j7.device`},
	{"[   80.1] fixture sshd[1242]: Connection closed by 10.0.2.2 port 42191", "[   83.9] fixture sshd[977]: Connection closed by 10.0.2.2 port 51012"},
	{`{"timestamp":"2026-12-02T06:09:01.123Z","level":"INFO","event":"pre_nixos.command.finished","command":"wipefs -a /dev/vda","returncode":0,"duration_ms":1074}`, `{"timestamp":"2026-12-02T06:18:44.010Z","level":"INFO","event":"pre_nixos.command.finished","command":"wipefs -a /dev/vda","returncode":0,"duration_ms":928}`},
	{"[    6.0] fixture kernel: clocksource: tsc: mask: 0xffffffffffffffff max_cycles: 0x23f3e1c5ba4, max_idle_ns: 440795208402 ns", "[    6.0] fixture kernel: clocksource: tsc: mask: 0xffffffffffffffff max_cycles: 0x2398ad6a2c3, max_idle_ns: 440795234567 ns"},
}

// differentMessages must stay different after normalising: the change is real.
var differentMessages = [][2]string{
	{"[ 5.0] fixture systemd[1]: Failed to start pre-nixos.service - pre-nixos.", "[ 5.0] fixture systemd[1]: Failed to start ssh.service - OpenBSD Secure Shell server."},
	{"[ 5.0] fixture systemd[1]: pre-nixos.service: Main process exited, code=exited, status=1/FAILURE", "[ 5.0] fixture systemd[1]: pre-nixos.service: Main process exited, code=exited, status=2/INVALIDARGUMENT"},
	{"[ 5.0] fixture kernel: sd 0:0:0:0: [sda] 8388608 512-byte logical blocks", "[ 5.0] fixture kernel: sd 0:0:0:0: [sdb] 8388608 512-byte logical blocks"},
	{"[ 5.0] fixture sshd[812]: Server listening on 0.0.0.0 port 22.", "[ 5.0] fixture sshd[812]: Server listening on 0.0.0.0 port 222."},
	{"[ 5.0] fixture kernel: Linux version 6.1.0-28-amd64", "[ 5.0] fixture kernel: Linux version 6.1.0-29-amd64"},
}

func TestNormaliseSameAcrossBoots(t *testing.T) {
	for _, p := range sameAcrossBoots {
		require.Equal(t, NormaliseJournalLine(p[0]), NormaliseJournalLine(p[1]), "%q vs %q", p[0], p[1])
	}
}

func TestNormaliseKeepsRealDifferences(t *testing.T) {
	for _, p := range differentMessages {
		require.NotEqual(t, NormaliseJournalLine(p[0]), NormaliseJournalLine(p[1]), "%q vs %q", p[0], p[1])
	}
}

func TestNormaliseExamples(t *testing.T) {
	for in, want := range map[string]string{
		"[   12.345678] fixture sshd[812]: Server listening on 0.0.0.0 port 22.":                    "fixture sshd[PID]: Server listening on <ipv4> port 22.",
		"[    4.0] fixture systemd[1]: Finished systemd-tmpfiles-setup.service in 1.234s.":          "fixture systemd[PID]: Finished systemd-tmpfiles-setup.service in <dur>.",
		"[    3.2] fixture kernel: lan: renamed from eth0, MAC 52:54:00:12:34:56":                   "fixture kernel: lan: renamed from eth0, MAC <mac>",
		"[    5.0] fixture systemd[1]: pre-nixos.service: Failed with result 'exit-code'.":          "fixture systemd[PID]: pre-nixos.service: Failed with result 'exit-code'.",
		`dev-disk-by\x2duuid-0b3c8f0e\x2d5a2d\x2d4e8f\x2d9d1c\x2d2f6a7b8c9d0e.device loaded active`: `dev-disk-by-uuid-<uuid>.device loaded active`,
	} {
		got := NormaliseJournalLine(in)
		require.Equal(t, want, got, "normalising %q", in)
	}
}

func FuzzNormaliseJournalLine(f *testing.F) {
	for _, p := range append(sameAcrossBoots, differentMessages...) {
		f.Add(p[0])
		f.Add(p[1])
	}
	f.Add("")
	f.Add("[")
	f.Add("::")
	f.Add("0x")
	f.Fuzz(func(t *testing.T, line string) {
		n := NormaliseJournalLine(line)
		// Normalising is idempotent: a normalised line is a fixed point, so comparing
		// normalised forms is an equivalence.
		require.Equal(t, n, NormaliseJournalLine(n), "not idempotent for %q", line)
		require.Equal(t, n, NormaliseText(n))
		require.False(t, strings.ContainsAny(n, "\r\n"), "one line stays one line")
		if utf8.ValidString(line) {
			require.True(t, utf8.ValidString(n), "valid UTF-8 stays valid")
		}
		require.Equal(t, strings.TrimSpace(n), n)
	})
}

// testdata/serial holds the kernel log of two boots of the same fixture ISO, as printed
// on their consoles (the same lines the journal holds as "kernel: ..."). After
// normalising, every line of the second boot is one the first had too, except the
// events that really happened only in the second: a soft lockup of a starved TCG guest
// (with its call trace) and the raid6 algorithm its benchmark picked.
func TestRealKernelLogsNormaliseAlike(t *testing.T) {
	read := func(name string) []string {
		b, err := os.ReadFile(filepath.Join("testdata", "serial", name))
		require.NoError(t, err)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	a, b := read("boot1-kernel.txt"), read("boot2-kernel.txt")
	require.Greater(t, len(b), 300)
	have := map[string]bool{}
	for _, l := range a {
		have[NormaliseJournalLine(l)] = true
	}
	var rawDiffer, onlyB []string
	for i, l := range b {
		n := NormaliseJournalLine(l)
		if !have[n] {
			onlyB = append(onlyB, n)
		}
		if i < len(a) && l != a[i] && n == NormaliseJournalLine(a[i]) {
			rawDiffer = append(rawDiffer, l)
		}
	}
	require.NotEmpty(t, rawDiffer, "the raw logs differ (timestamps, memory, calibration)")
	for _, n := range onlyB {
		require.Regexp(t, `^(watchdog: BUG: soft lockup - CPU#0 stuck for <dur>! \[init:PID\]|Call Trace:|raid6: using algorithm .*)$`, n)
	}
}

// testdata/real is the journal of a passing fixture demo (2026-12-02): its warnings and
// an excerpt of systemd's, sshd's and networkd's lines, as the evidence set captured
// them. Each line loses its timestamp and PID and keeps its message.
func TestRealJournalLines(t *testing.T) {
	for _, name := range []string{"journal-warnings.txt", "journal-excerpt.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", "real", name))
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		require.NotEmpty(t, lines)
		for _, l := range lines {
			n := NormaliseJournalLine(l)
			require.NotRegexp(t, `^\[`, n, "the monotonic timestamp is gone from %q", l)
			require.NotRegexp(t, `\[\d+\]:`, n, "the PID is gone from %q", l)
			require.True(t, strings.HasPrefix(n, "fixture "), "the host name stays: %q", n)
			require.Equal(t, n, NormaliseJournalLine(n))
		}
	}
	for in, want := range map[string]string{
		"[  274.411902] fixture sshd[681]: pam_env(sshd:session): Unable to open env file: /etc/default/locale: No such file or directory":    "fixture sshd[PID]: pam_env(sshd:session): Unable to open env file: /etc/default/locale: No such file or directory",
		"[  215.702538] fixture kernel: hrtimer: interrupt took 14848184 ns":                                                                  "fixture kernel: hrtimer: interrupt took <dur>",
		"[    0.734694] fixture kernel: APIC calibration not consistent with PM-Timer: 101ms instead of 100ms":                                "fixture kernel: APIC calibration not consistent with PM-Timer: <dur> instead of <dur>",
		"[   14.108800] fixture kernel: hpet: Lost 1 RTC interrupts":                                                                          "fixture kernel: hpet: Lost <n> RTC interrupts",
		"[  183.974151] fixture kernel: clocksource: Long readout interval, skipping watchdog check: cs_nsec: 1446776606 wd_nsec: 1446776210": "fixture kernel: clocksource: Long readout interval, skipping watchdog check: cs_nsec: <num> wd_nsec: <num>",
		"[  150.834996] fixture kernel: platform regulatory.0: firmware: failed to load regulatory.db (-2)":                                   "fixture kernel: platform regulatory.0: firmware: failed to load regulatory.db (-2)",
	} {
		require.Equal(t, want, NormaliseJournalLine(in))
	}
}
