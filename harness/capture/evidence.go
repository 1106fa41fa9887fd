package capture

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// Evidence file names (without .txt) in the evidence directory; the run diff reads them
// by these names, so they are part of the run-directory format (docs/run-records.md).
const (
	EvKernelVersion = "kernel-version"
	EvCmdline       = "kernel-cmdline"
	EvJournal       = "journal"
	EvJournalWarn   = "journal-warnings"
	EvDmesg         = "dmesg"
	EvUnits         = "systemctl-list-units"
	EvFailed        = "systemctl-failed"
	EvBlame         = "systemd-analyze-blame"
	EvCriticalChain = "systemd-analyze-critical-chain"
	EvNetworkctl    = "networkctl-status"
	EvIPAddr        = "ip-addr"
	EvLsblk         = "lsblk"
	EvPreNixosFiles = "pre-nixos-files"
	EvPreNixosPlan  = "pre-nixos-plan"
)

// Features is what the guest offers to capture with, detected once per evidence run.
type Features struct {
	Systemd bool            // PID 1 is systemd (/run/systemd/system exists)
	Tools   map[string]bool // commands found on PATH
}

// featureProbe prints "@systemd" when systemd runs the guest, then every tool found.
// One command, because each round trip on a serial console costs time.
const featureProbe = `[ -d /run/systemd/system ] && echo @systemd; for c in journalctl systemctl systemd-analyze networkctl ip lsblk pre-nixos dmesg; do command -v "$c" >/dev/null 2>&1 && echo "$c"; done; true`

// ParseFeatures reads featureProbe's output.
func ParseFeatures(out string) Features {
	f := Features{Tools: map[string]bool{}}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "@systemd":
			f.Systemd = true
		case l != "":
			f.Tools[l] = true
		}
	}
	return f
}

// DetectFeatures asks the guest what it has.
func DetectFeatures(ctx context.Context, r Runner) (Features, error) {
	ictx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	out, _, err := r.Exec(ictx, Wrap(featureProbe))
	if err != nil {
		return Features{}, fmt.Errorf("detecting what the guest can capture: %w", err)
	}
	return ParseFeatures(string(out)), nil
}

// EvidenceSet is the whole-boot evidence taken at the end of every run: kernel and
// command line, the boot's journal (all of it, and warnings and worse on their own for
// the diff), units, boot timing, network and block-device state, and pre-nixos's status
// files and plan. Items the guest cannot answer (no systemd on a mini image or an
// installer, no lsblk in busybox) are recorded as not applicable with the reason, not
// run to fail.
func EvidenceSet(f Features) Set {
	needSystemd := func(tool string) string {
		switch {
		case !f.Systemd:
			return "the image does not run systemd"
		case !f.Tools[tool]:
			return tool + " is not installed"
		}
		return ""
	}
	needTool := func(tool string) string {
		if !f.Tools[tool] {
			return tool + " is not installed"
		}
		return ""
	}
	const tail = 65536
	items := []Item{
		{Name: EvKernelVersion, Label: "uname -r", Cmd: "uname -r"},
		{Name: EvCmdline, Label: "kernel command line", Cmd: "cat /proc/cmdline"},
		{Name: EvJournal, Label: "journalctl -b (whole boot)", Cmd: "journalctl -b --no-pager -o short-monotonic", Timeout: 2 * time.Minute, NotApplicable: needSystemd("journalctl")},
		{Name: EvJournalWarn, Label: "journalctl -b -p warning", Cmd: "journalctl -b --no-pager -o short-monotonic -p warning", Timeout: time.Minute, NotApplicable: needSystemd("journalctl")},
		// Without a journal the kernel log is the boot's record.
		{Name: EvDmesg, Label: "dmesg (no journal)", Cmd: "dmesg", Timeout: time.Minute, NotApplicable: ifElse(f.Systemd && f.Tools["journalctl"], "the journal holds the kernel log", needTool("dmesg"))},
		{Name: EvUnits, Label: "systemctl list-units --all", Cmd: "systemctl list-units --all --no-pager --plain --no-legend", NotApplicable: needSystemd("systemctl")},
		{Name: EvFailed, Label: "systemctl list-units --failed", Cmd: "systemctl list-units --failed --all --no-pager --plain --no-legend", NotApplicable: needSystemd("systemctl")},
		// systemd-analyze took 16-20 s on a starved TCG fixture (2026-12-02): room for that.
		{Name: EvBlame, Label: "systemd-analyze blame", Cmd: "systemd-analyze blame --no-pager", Timeout: 90 * time.Second, NotApplicable: needSystemd("systemd-analyze")},
		{Name: EvCriticalChain, Label: "systemd-analyze critical-chain", Cmd: "systemd-analyze critical-chain --no-pager", Timeout: 90 * time.Second, NotApplicable: needSystemd("systemd-analyze")},
		{Name: EvNetworkctl, Label: "networkctl status --all", Cmd: "networkctl status --all --no-pager", NotApplicable: needSystemd("networkctl")},
		// busybox ip has no -j: plain output is still the evidence.
		{Name: EvIPAddr, Label: "ip -j addr", Cmd: "ip -j addr 2>/dev/null || ip addr", NotApplicable: needTool("ip")},
		{Name: EvLsblk, Label: "lsblk -J -O", Cmd: "lsblk -J -O", NotApplicable: needTool("lsblk")},
		{Name: EvPreNixosFiles, Label: "pre-nixos status files (/run/pre-nixos, /var/log/pre-nixos)",
			Cmd:           fmt.Sprintf(`for f in /run/pre-nixos/* /var/log/pre-nixos/*; do [ -f "$f" ] && { echo "==> $f <=="; tail -c %d -- "$f"; echo; }; done; true`, tail),
			NotApplicable: needTool("pre-nixos")},
		{Name: EvPreNixosPlan, Label: "pre-nixos --plan-only", Cmd: "pre-nixos --plan-only", Timeout: time.Minute, NotApplicable: needTool("pre-nixos")},
	}
	return Set{Name: "boot", Items: items}
}

func ifElse(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}

// Evidence replaces dir with a fresh evidence capture: it detects what the guest
// offers, then runs EvidenceSet. Taking evidence again (a debug session, a test that
// changes the guest) replaces the old files, so the directory always describes one
// moment.
func Evidence(ctx context.Context, r Runner, dir string) (Index, error) {
	if err := os.RemoveAll(dir); err != nil {
		return Index{Dir: dir}, fmt.Errorf("clearing old evidence in %s: %w", dir, err)
	}
	f, err := DetectFeatures(ctx, r)
	if err != nil {
		return Index{Dir: dir}, err
	}
	return Capture(ctx, r, dir, EvidenceSet(f))
}
