// Package network finds the cabled NIC, renames it `lan` with a systemd
// .link file, enables DHCP on it through systemd-networkd and waits for an
// IPv4 address (docs/provisioner.md, "pre-nixos boot", step 4).
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
)

// Paths on the target system.
const (
	NetworkDir  = "/etc/systemd/network"
	LinkFile    = NetworkDir + "/10-lan.link"
	NetworkFile = NetworkDir + "/20-lan.network"
	LANName     = "lan"
)

// NetworkUnit is the DHCP unit for `lan`.
const NetworkUnit = "[Match]\nName=lan\n\n[Network]\nDHCP=yes\n"

// ErrNoNIC means no interface with a link was found.
var ErrNoNIC = errors.New("no network interface with a link")

// Config drives LAN configuration.
type Config struct {
	// SysfsRoot holds class/net (default /sys).
	SysfsRoot string
	Root      execpolicy.Root
	Runner    execpolicy.Runner
	// Exec enables link nudging and real waits; without it waits are short
	// and commands are only logged (by the runner).
	Exec bool
	Log  *slog.Logger
	// Sleep waits between attempts; tests pass a no-op.
	Sleep func(time.Duration)

	LANAttempts  int           // default 30
	LANDelay     time.Duration // default 2 s
	IPv4Attempts int           // default 60
	IPv4Delay    time.Duration // default 1 s
}

func (c *Config) defaults() {
	if c.SysfsRoot == "" {
		c.SysfsRoot = "/sys"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Sleep == nil {
		c.Sleep = time.Sleep
	}
	if c.LANAttempts <= 0 {
		c.LANAttempts = 30
	}
	if c.LANDelay <= 0 {
		c.LANDelay = 2 * time.Second
	}
	if c.IPv4Attempts <= 0 {
		c.IPv4Attempts = 60
	}
	if c.IPv4Delay <= 0 {
		c.IPv4Delay = time.Second
	}
	if !c.Exec {
		c.LANDelay = min(c.LANDelay, 100*time.Millisecond)
	}
}

func (c *Config) netDir() string { return filepath.Join(c.SysfsRoot, "class/net") }

// physical lists interfaces backed by a device (not lo, bridges, veth...).
func physical(netDir string) ([]string, error) {
	entries, err := os.ReadDir(netDir)
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces in %s: %w", netDir, err)
	}
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(netDir, e.Name(), "device")); err == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// transient reports read errors virtio NICs give for carrier while down.
func transient(err error) bool {
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno == 0 || errno == syscall.EINVAL || errno == syscall.ENODEV || errno == syscall.ENXIO
	}
	return false
}

// readFile is swapped in tests to simulate the errno values virtio NICs
// return for carrier, which regular files cannot produce.
var readFile = os.ReadFile

// IdentifyLAN returns the first interface (by name) with carrier, falling
// back to operstate "up" when carrier cannot be read.
func IdentifyLAN(netDir string, log *slog.Logger) (string, error) {
	ifaces, err := physical(netDir)
	if err != nil {
		return "", err
	}
	for _, iface := range ifaces {
		b, err := readFile(filepath.Join(netDir, iface, "carrier"))
		if err == nil {
			if strings.TrimSpace(string(b)) == "1" {
				log.Info("pre_nixos.network.identify_lan.detected", "interface", iface, "signal", "carrier")
				return iface, nil
			}
			continue
		}
		if !transient(err) {
			return "", fmt.Errorf("reading carrier of %s: %w", iface, err)
		}
		b, err = readFile(filepath.Join(netDir, iface, "operstate"))
		if err != nil {
			if transient(err) {
				continue
			}
			return "", fmt.Errorf("reading operstate of %s: %w", iface, err)
		}
		if strings.ToLower(strings.TrimSpace(string(b))) == "up" {
			log.Info("pre_nixos.network.identify_lan.detected", "interface", iface, "signal", "operstate")
			return iface, nil
		}
	}
	return "", nil
}

// WaitForLAN polls IdentifyLAN, bringing every physical link up first when
// executing so virtio NICs report carrier at all.
func WaitForLAN(ctx context.Context, c Config) (string, error) {
	c.defaults()
	c.Log.Info("pre_nixos.network.wait_for_lan.start", "attempts", c.LANAttempts, "delay_seconds", c.LANDelay.Seconds(), "net_path", c.netDir())
	for i := 0; i < c.LANAttempts; i++ {
		if c.Exec {
			ifaces, err := physical(c.netDir())
			if err != nil {
				return "", err
			}
			for _, iface := range ifaces {
				_, _ = c.Runner.Run(ctx, execpolicy.C("ip", "link", "set", iface, "up"))
			}
		}
		iface, err := IdentifyLAN(c.netDir(), c.Log)
		if err != nil {
			return "", err
		}
		if iface != "" {
			c.Log.Info("pre_nixos.network.wait_for_lan.detected", "interface", iface, "attempt", i+1)
			return iface, nil
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if i+1 < c.LANAttempts {
			c.Sleep(c.LANDelay)
		}
	}
	c.Log.Warn("pre_nixos.network.wait_for_lan.timeout")
	return "", ErrNoNIC
}

// LinkUnit renders 10-lan.link. Match lines are omitted when unknown.
func LinkUnit(originalName, mac string) string {
	var b strings.Builder
	b.WriteString("[Match]\n")
	if originalName != "" {
		b.WriteString("OriginalName=" + originalName + "\n")
	}
	if mac != "" {
		b.WriteString("MACAddress=" + strings.ToLower(mac) + "\n")
	}
	b.WriteString("\n[Link]\nName=lan\n")
	return b.String()
}

// Result describes a configured LAN.
type Result struct {
	Interface    string
	OriginalName string
	MAC          string
}

// Configure finds the LAN, writes the units and renames it to `lan`.
func Configure(ctx context.Context, c Config) (Result, error) {
	c.defaults()
	c.Log.Info("pre_nixos.network.configure_lan.start")
	iface, err := WaitForLAN(ctx, c)
	if err != nil {
		c.Log.Warn("pre_nixos.network.configure_lan.no_interface", "error", err.Error())
		return Result{}, err
	}
	mac := ""
	if b, err := os.ReadFile(filepath.Join(c.netDir(), iface, "address")); err == nil {
		mac = strings.ToLower(strings.TrimSpace(string(b)))
	}
	// Keep the kernel's name across reruns: once renamed, the interface is
	// `lan` and only the old .link file still knows what it was called.
	orig := ""
	if b, err := c.Root.ReadFile(LinkFile); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "OriginalName="); ok && v != "" && v != LANName {
				orig = v
			}
		}
	}
	if orig == "" && iface != LANName {
		orig = iface
	}
	c.Log.Info("pre_nixos.network.configure_lan.detected_interface", "interface", iface, "mac_address", mac)
	if err := c.Root.WriteFile(LinkFile, []byte(LinkUnit(orig, mac)), 0o644); err != nil {
		return Result{}, err
	}
	if err := c.Root.WriteFile(NetworkFile, []byte(NetworkUnit), 0o644); err != nil {
		return Result{}, err
	}
	c.Log.Info("pre_nixos.network.configure_lan.network_file_written", "rule_path", c.Root.Path(LinkFile), "network_unit", c.Root.Path(NetworkFile))
	run := func(cmd execpolicy.Cmd, allowed ...int) error {
		res, err := c.Runner.Run(ctx, cmd)
		return execpolicy.Check(res, err, cmd, allowed...)
	}
	// An interface already called lan is not bounced: that would drop the
	// connection of anyone logged in over SSH, as every rerun of the Python
	// pre-nixos did.
	if iface != LANName {
		for _, cmd := range []execpolicy.Cmd{
			execpolicy.C("ip", "link", "set", iface, "down"),
			execpolicy.C("ip", "link", "set", iface, "name", LANName),
			execpolicy.C("ip", "link", "set", LANName, "up"),
		} {
			if err := run(cmd); err != nil {
				return Result{}, fmt.Errorf("renaming %s to %s: %w", iface, LANName, err)
			}
		}
	}
	// Exit 5: systemd-networkd is not installed; nothing to restart.
	if err := run(execpolicy.C("systemctl", "restart", "systemd-networkd"), 5); err != nil {
		return Result{}, fmt.Errorf("restarting systemd-networkd: %w", err)
	}
	c.Log.Info("pre_nixos.network.configure_lan.finished", "interface", LANName, "original_name", orig, "mac_address", mac)
	return Result{Interface: LANName, OriginalName: orig, MAC: mac}, nil
}

// IPv4 returns the first global IPv4 address of iface from `ip -j`, "" when
// there is none. Malformed JSON is an error, not "no address".
func IPv4(ctx context.Context, r execpolicy.Runner, iface string) (string, error) {
	cmd := execpolicy.P("ip", "-j", "-4", "addr", "show", iface)
	res, err := r.Run(ctx, cmd)
	if err := execpolicy.Check(res, err, cmd); err != nil {
		return "", err
	}
	return ParseIPv4(res.Stdout)
}

// ParseIPv4 extracts the first inet address from `ip -j addr` output.
func ParseIPv4(out []byte) (string, error) {
	if len(strings.TrimSpace(string(out))) == 0 {
		return "", nil
	}
	var links []struct {
		AddrInfo []struct {
			Family string `json:"family"`
			Local  string `json:"local"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return "", fmt.Errorf("parsing ip -j output: %w", err)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Family != "inet" || a.Local == "" {
				continue
			}
			addr, err := netip.ParseAddr(a.Local)
			if err != nil || !addr.Is4() {
				return "", fmt.Errorf("parsing ip -j output: bad IPv4 address %q", a.Local)
			}
			return addr.String(), nil
		}
	}
	return "", nil
}

// ErrNoIPv4 means the LAN got no address in time.
var ErrNoIPv4 = errors.New("no IPv4 address")

// WaitIPv4 polls for an address on iface.
func WaitIPv4(ctx context.Context, c Config, iface string) (string, error) {
	c.defaults()
	c.Log.Info("pre_nixos.network.wait_for_ipv4.start", "interface", iface, "attempts", c.IPv4Attempts, "delay_seconds", c.IPv4Delay.Seconds(), "exec_enabled", c.Exec)
	if !c.Exec {
		c.Log.Info("pre_nixos.network.wait_for_ipv4.skipped", "reason", "execution disabled")
		return "", nil
	}
	var lastErr error
	for i := 0; i < c.IPv4Attempts; i++ {
		ip, err := IPv4(ctx, c.Runner, iface)
		if err != nil {
			lastErr = err
		} else if ip != "" {
			c.Log.Info("pre_nixos.network.wait_for_ipv4.detected", "attempt", i+1, "ip_address", ip)
			return ip, nil
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if i+1 < c.IPv4Attempts {
			c.Sleep(c.IPv4Delay)
		}
	}
	c.Log.Warn("pre_nixos.network.wait_for_ipv4.timeout", "interface", iface)
	if lastErr != nil {
		return "", fmt.Errorf("%w on %s: %v", ErrNoIPv4, iface, lastErr)
	}
	return "", fmt.Errorf("%w on %s after %d attempts", ErrNoIPv4, iface, c.IPv4Attempts)
}
