package rundiff

import (
	"regexp"
	"strconv"
	"strings"
)

// Journal lines carry, besides the message, things that differ on every boot even when
// nothing is wrong: the monotonic or wall-clock timestamp, the process id, addresses
// handed out by DHCP or chosen by the kernel, random UUIDs of freshly made file
// systems, MAC addresses of virtual NICs, temporary and transient unit names, pointers,
// and durations. Normalise replaces each with a placeholder so that two clean boots
// produce the same set of lines and only a real change is left.
var (
	// "[    5.123456] " (short-monotonic), "Dec 02 05:01:02 " (short),
	// "2026-12-02T05:01:02+0000 " (short-iso).
	reMonoPrefix = regexp.MustCompile(`^\[\s*\d+\.\d+\]\s*`)
	reWallPrefix = regexp.MustCompile(`^[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d(\.\d+)?\s+`)
	reISOPrefix  = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:?\d\d|Z)?\s+`)
	// "sshd[812]:" -> "sshd[PID]:"; also "pid 812", "PID 812", "pid=812".
	rePIDTag  = regexp.MustCompile(`\[\d+\]:`)
	rePIDWord = regexp.MustCompile(`(?i)\b(pid[ =:]?|process )\d+\b`)
	// Kernel-style timestamps inside a message: "[    1.234]".
	reInnerMono = regexp.MustCompile(`\[\s*\d+\.\d+\]`)
	reWallTime  = regexp.MustCompile(`\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?( ?(UTC|[+-]\d\d:?\d\d|Z))?`)
	reClock     = regexp.MustCompile(`\b\d\d:\d\d:\d\d(\.\d+)?\b`)
	reUUID      = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b`)
	// Short vfat/ext serials "by-uuid/ABCD-1234".
	reShortUUID = regexp.MustCompile(`(?i)\b[0-9a-f]{4}-[0-9a-f]{4}\b`)
	// LVM's UUIDs: 6-4-4-4-4-4-6 alphanumerics (PVs, VGs, LVs).
	reLVMUUID = regexp.MustCompile(`\b[A-Za-z0-9]{6}(-[A-Za-z0-9]{4}){5}-[A-Za-z0-9]{6}\b`)
	// Long random tokens mixing letters and digits (dm-uuid-LVM-<64>, machine ids).
	reToken = regexp.MustCompile(`\b[A-Za-z0-9]{16,}\b`)
	reDigit = regexp.MustCompile(`[0-9]`)
	reAlpha = regexp.MustCompile(`[A-Za-z]`)
	reMAC   = regexp.MustCompile(`(?i)\b([0-9a-f]{2}[:-]){5}[0-9a-f]{2}\b`)
	reIPv4  = regexp.MustCompile(`\b(\d{1,3}\.){3}\d{1,3}(/\d{1,2})?(:\d+)?\b`)
	// IPv6: at least two groups around a "::", or eight full groups.
	reIPv6  = regexp.MustCompile(`(?i)(\b[0-9a-f]{1,4}(:[0-9a-f]{1,4})*)?::([0-9a-f]{1,4}(:[0-9a-f]{1,4})*)?(/\d{1,3})?|\b([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b`)
	reHex0x = regexp.MustCompile(`(?i)\b0x[0-9a-f]+\b`)
	// Bare hex of 8 or more digits with at least one letter or long enough to be an id
	// (pointers, hashes, machine ids, transient unit suffixes).
	reHexWord = regexp.MustCompile(`(?i)\b[0-9a-f]*[a-f][0-9a-f]*\b`)
	reLongNum = regexp.MustCompile(`\b\d{6,}\b`)
	// "1.234s", "12ms", "1min 2.5s", "3.2 ms", "120us", "5ns", "2h".
	reDuration = regexp.MustCompile(`\b\d+(\.\d+)?\s?(ns|us|µs|ms|s|sec|secs|seconds?|min|h)\b`)
	// Random names: mktemp's tmp.XXXXXXXXXX, systemd-run's run-u123 / run-r<hex>,
	// session-3.scope, user-1000.slice, systemd-private-<hex>.
	reTmpName = regexp.MustCompile(`\btmp\.[A-Za-z0-9]{6,}\b`)
	reRunUnit = regexp.MustCompile(`\brun-[pru][0-9a-zA-Z]+\b`)
	reSession = regexp.MustCompile(`\b(session|user|user-runtime-dir@|user@|Session )-?\d+\b`)
	// Measured at boot, different every time: clock and TSC frequencies, BogoMIPS, RAID
	// and xor benchmark rates, memory left after the kernel took its share, audit's
	// own timestamps, "[comm:pid]" in kernel warnings.
	reFreq    = regexp.MustCompile(`\b\d+(\.\d+)? ?[kMG]Hz\b`)
	reBogo    = regexp.MustCompile(`\b\d+(\.\d+)? BogoMIPS\b`)
	reRate    = regexp.MustCompile(`\b\d+(\.\d+)? ?[kKMG]i?B/s(ec)?\b`)
	reKSize   = regexp.MustCompile(`\b\d+K\b`)
	reAudit   = regexp.MustCompile(`audit\(\d+\.\d+:\d+\)`)
	reLostIRQ = regexp.MustCompile(`\bLost \d+ RTC interrupts\b`)
	reCommPID = regexp.MustCompile(`\[([A-Za-z0-9_./-]+):\d+\]`)
	// Ephemeral ports of clients (sshd's "Connection closed by ... port 42191"); the
	// well-known ports below 1024 are configuration and stay.
	rePort = regexp.MustCompile(`\bport (\d+)\b`)
	// Durations and retry counts in structured (JSON) logs such as pre-nixos's:
	// "duration_ms":1074, "attempt":2 (how often a DHCP wait polled).
	reJSONDur  = regexp.MustCompile(`"([A-Za-z_]*(_ms|_us|_ns|_s|_sec|_seconds)|duration|elapsed|attempts?)":\s*\d+(\.\d+)?`)
	reSpaces   = regexp.MustCompile(`\s+`)
	reHexCheck = regexp.MustCompile(`[0-9]`)
)

// NormaliseJournalLine reduces a journal line (short, short-iso or short-monotonic
// output) to what is the same on every clean boot. The result is stable: normalising it
// again changes nothing.
func NormaliseJournalLine(line string) string {
	s := strings.TrimRight(line, "\r\n")
	s = reMonoPrefix.ReplaceAllString(s, "")
	s = reWallPrefix.ReplaceAllString(s, "")
	s = reISOPrefix.ReplaceAllString(s, "")
	return normaliseText(s)
}

// NormaliseText applies the same placeholders to any capture line (units, addresses,
// block devices), without a journal prefix to strip.
func NormaliseText(s string) string { return normaliseText(s) }

func normaliseText(s string) string {
	// systemd escapes "-" as \x2d in unit names (dev-disk-by\x2duuid-...); unescaped,
	// the UUIDs and random tokens inside are words the rules below can find.
	s = strings.ReplaceAll(s, `\x2d`, "-")
	// Spacing first: the rules below must see what a second pass would see.
	s = strings.TrimSpace(reSpaces.ReplaceAllString(s, " "))
	s = rePIDTag.ReplaceAllString(s, "[PID]:")
	s = reJSONDur.ReplaceAllString(s, `"$1":<dur>`)
	s = reCommPID.ReplaceAllString(s, "[$1:PID]")
	s = reAudit.ReplaceAllString(s, "audit(<time>)")
	s = reLostIRQ.ReplaceAllString(s, "Lost <n> RTC interrupts")
	s = reFreq.ReplaceAllString(s, "<freq>")
	s = reBogo.ReplaceAllString(s, "<n> BogoMIPS")
	s = reRate.ReplaceAllString(s, "<rate>")
	s = reKSize.ReplaceAllString(s, "<size>")
	s = reInnerMono.ReplaceAllString(s, "[T]")
	s = reWallTime.ReplaceAllString(s, "<time>")
	s = reUUID.ReplaceAllString(s, "<uuid>")
	s = reLVMUUID.ReplaceAllString(s, "<uuid>")
	s = reMAC.ReplaceAllString(s, "<mac>")
	s = reIPv4.ReplaceAllString(s, "<ipv4>")
	s = reIPv6.ReplaceAllStringFunc(s, func(m string) string {
		// "::" alone inside prose (C++ names, "foo::bar") is rare in journals; an address
		// has hex digits around it.
		if strings.Trim(m, ":") == "" {
			return m
		}
		return "<ipv6>"
	})
	s = reHex0x.ReplaceAllString(s, "<hex>")
	s = reHexWord.ReplaceAllStringFunc(s, func(m string) string {
		if len(m) >= 8 && reHexCheck.MatchString(m) {
			return "<hex>"
		}
		return m
	})
	s = reShortUUID.ReplaceAllString(s, "<uuid>")
	s = reToken.ReplaceAllStringFunc(s, func(m string) string {
		if reDigit.MatchString(m) && reAlpha.MatchString(m) {
			return "<rand>"
		}
		return m
	})
	s = reTmpName.ReplaceAllString(s, "tmp.<rand>")
	s = reRunUnit.ReplaceAllString(s, "run-<rand>")
	s = reSession.ReplaceAllStringFunc(s, func(m string) string {
		i := strings.LastIndexFunc(m, func(r rune) bool { return r < '0' || r > '9' })
		return m[:i+1] + "N"
	})
	s = rePort.ReplaceAllStringFunc(s, func(m string) string {
		if n, err := strconv.Atoi(m[len("port "):]); err == nil && n < 1024 {
			return m
		}
		return "port <port>"
	})
	s = reDuration.ReplaceAllString(s, "<dur>")
	s = reClock.ReplaceAllString(s, "<time>")
	s = rePIDWord.ReplaceAllString(s, "${1}N")
	s = reLongNum.ReplaceAllString(s, "<num>")
	return strings.TrimSpace(reSpaces.ReplaceAllString(s, " "))
}
