package capture

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// journalLines bounds a journal capture: the serial line moves about 11 KB/s and the end
// of a unit's journal is what explains its state.
const journalLines = 400

// Unit names a systemd unit, adding ".service" when no unit type is given, as systemctl
// does.
func Unit(name string) string {
	for _, suffix := range []string{".service", ".socket", ".target", ".mount", ".timer", ".path", ".device", ".swap", ".slice", ".scope", ".automount"} {
		if strings.HasSuffix(name, suffix) {
			return name
		}
	}
	return name + ".service"
}

func unitSlug(unit string) string { return slug(strings.TrimSuffix(unit, ".service")) }

// Systemd is the systemd set: the job queue and failed units, then for each unit its
// status, its journal for this boot and what it depends on.
func Systemd(units ...string) Set {
	s := Set{Name: "systemd", Items: []Item{
		{Name: "systemd-list-jobs", Label: "systemctl list-jobs", Cmd: "systemctl list-jobs --no-pager -l"},
		{Name: "systemd-failed", Label: "systemctl --failed", Cmd: "systemctl list-units --failed --all --no-pager -l"},
	}}
	for _, u := range units {
		u = Unit(u)
		n := unitSlug(u)
		s.Items = append(s.Items,
			Item{Name: "systemd-status-" + n, Label: "systemctl status " + u, Cmd: "systemctl status --no-pager -l " + shellQuote(u)},
			Item{Name: "journal-" + n, Label: "journalctl -u " + u + " -b", Cmd: fmt.Sprintf("journalctl -u %s -b --no-pager -o short-monotonic -n %d", shellQuote(u), journalLines), Timeout: 30 * time.Second},
			Item{Name: "systemd-dependencies-" + n, Label: "systemctl list-dependencies " + u, Cmd: "systemctl list-dependencies --no-pager -l " + shellQuote(u)},
		)
	}
	return s
}

// Network is the network set: networkd's view, links, addresses and routes, and for each
// interface given, its networkd status and counters.
func Network(ifaces ...string) Set {
	s := Set{Name: "network", Items: []Item{
		{Name: "network-networkctl-status", Label: "networkctl status", Cmd: "networkctl status --no-pager -a"},
		{Name: "network-ip-link", Label: "ip -o link", Cmd: "ip -o link"},
		{Name: "network-ip-addr", Label: "ip addr", Cmd: "ip addr"},
		{Name: "network-ip-route", Label: "ip route", Cmd: "ip route; ip -6 route"},
	}}
	for _, i := range ifaces {
		n := slug(i)
		q := shellQuote(i)
		s.Items = append(s.Items,
			Item{Name: "network-networkctl-status-" + n, Label: "networkctl status " + i, Cmd: "networkctl status --no-pager " + q},
			Item{Name: "network-ip-link-stats-" + n, Label: "ip -s link show dev " + i, Cmd: "ip -s link show dev " + q},
		)
	}
	return s
}

// Storage is the storage set: block devices with filesystems, what pre-nixos wrote under
// /run/pre-nixos and /var/log/pre-nixos (and /tmp/pre-nixos*.log, where the Python
// pre-nixos kept its logs), the plan it would apply now, and whether storage detection
// succeeds.
func Storage() Set {
	return Set{Name: "storage", Items: []Item{
		{Name: "storage-lsblk", Label: "lsblk -f", Cmd: "lsblk -f"},
		{Name: "storage-lsblk-detail", Label: "lsblk (sizes, types, parents)", Cmd: "lsblk -b -o NAME,KNAME,PKNAME,TYPE,SIZE,FSTYPE,LABEL,MOUNTPOINTS,MODEL,SERIAL"},
		{Name: "storage-status", Label: "/run/pre-nixos/storage-status", Cmd: "cat /run/pre-nixos/storage-status"},
		{Name: "storage-run-pre-nixos", Label: "/run/pre-nixos/*", Glob: "/run/pre-nixos/*"},
		{Name: "storage-log-pre-nixos", Label: "/var/log/pre-nixos/*", Glob: "/var/log/pre-nixos/*"},
		{Name: "storage-tmp-pre-nixos", Label: "/tmp/pre-nixos*.log", Glob: "/tmp/pre-nixos*.log"},
		{Name: "storage-plan", Label: "pre-nixos --plan-only", Cmd: "pre-nixos --plan-only", Timeout: 60 * time.Second},
		{Name: "storage-detect", Label: "pre-nixos-detect-storage exit code", Cmd: "pre-nixos-detect-storage; echo exit=$?", Timeout: 60 * time.Second},
	}}
}

// Kernel is the kernel log, which the Python harness captured on every timeout.
func Kernel() Set {
	return Set{Name: "kernel", Items: []Item{
		{Name: "kernel-dmesg", Label: "dmesg", Cmd: "dmesg | tail -n 1000", Timeout: 30 * time.Second},
	}}
}

// WaitKind is what a timed-out wait was waiting for.
type WaitKind int

const (
	// WaitUnit: a unit reaching a state (active, inactive...).
	WaitUnit WaitKind = iota + 1
	// WaitIPv4: an IPv4 address on an interface.
	WaitIPv4
	// WaitFile: a file appearing in the guest.
	WaitFile
	// WaitSSH: SSH answering.
	WaitSSH
)

// Wait describes a wait that timed out.
type Wait struct {
	Kind WaitKind
	// Unit for WaitUnit; for WaitSSH the SSH unit ("sshd" on NixOS, "ssh" on Debian;
	// empty means sshd).
	Unit string
	// Iface for WaitIPv4 (empty means all interfaces).
	Iface string
	// Path for WaitFile.
	Path string
}

// ProvisioningUnit is the unit that drives storage and network set-up in the image.
const ProvisioningUnit = "pre-nixos"

// WaitDiagnostics says which sets to capture when a wait times out: what the Python
// harness bootlab replaces collected on each kind of timeout (status, journal, job queue,
// failed units, dmesg; networkctl and ip for IPv4; lsblk and storage-status for
// storage) plus what it lacked (dependencies, the plan, detection's exit code):
//
//   - unit: that unit's status, journal and dependencies, the job queue, failed units,
//     and the kernel log;
//   - IPv4: the network set for that interface, pre-nixos and systemd-networkd, the
//     kernel log;
//   - file: under /run/pre-nixos or /var/log/pre-nixos (storage status), the storage
//     set and pre-nixos; elsewhere, the directory listing, the job queue and failed units;
//     the kernel log in both cases;
//   - SSH: the SSH unit, the network set and the kernel log.
func WaitDiagnostics(w Wait) []Set {
	switch w.Kind {
	case WaitUnit:
		return []Set{Systemd(w.Unit), Kernel()}
	case WaitIPv4:
		var ifaces []string
		if w.Iface != "" {
			ifaces = []string{w.Iface}
		}
		return []Set{Network(ifaces...), Systemd(ProvisioningUnit, "systemd-networkd"), Kernel()}
	case WaitFile:
		if strings.HasPrefix(w.Path, "/run/pre-nixos/") || strings.HasPrefix(w.Path, "/var/log/pre-nixos/") {
			return []Set{Storage(), Systemd(ProvisioningUnit), Kernel()}
		}
		return []Set{File(w.Path), Systemd(), Kernel()}
	case WaitSSH:
		unit := w.Unit
		if unit == "" {
			unit = "sshd"
		}
		return []Set{Systemd(unit), Network(), Kernel()}
	}
	return []Set{Systemd(), Kernel()}
}

// File is a set about one path that has not appeared: what is in its directory and
// whether anything is mounted there.
func File(p string) Set {
	dir := path.Dir(p)
	return Set{Name: "file", Items: []Item{
		{Name: "file-ls-" + slug(dir), Label: "ls -la " + dir, Cmd: "ls -la -- " + shellQuote(dir)},
		{Name: "file-stat-" + slug(path.Base(p)), Label: "stat " + p, Cmd: "stat -- " + shellQuote(p)},
		{Name: "file-findmnt", Label: "findmnt", Cmd: "findmnt -l"},
	}}
}
