// Package verify holds the end-to-end checks of an image that runs pre-nixos, shared by
// `bootlab run` and the scenarios so both prove the same things the same way: storage
// provisioned (or deliberately not), the NIC renamed `lan` with a DHCP lease announced
// on the console, and root let in over SSH with the embedded key against a pinned host
// key.
package verify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/keys"
	"github.com/bootlab/bootlab/artifacts/progress"
	"github.com/bootlab/bootlab/harness/capture"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/sshc"
	"github.com/bootlab/bootlab/provisioner/status"
)

// Status file paths in the guest (the provisioner's, the same on every image; unit
// names and key paths that differ between images come from the image's profile).
const (
	StorageStatus = "/run/pre-nixos/storage-status"
	NetworkStatus = "/run/pre-nixos/network-status"
)

// PreNixos runs the checks in order. Expected values default to a blank disk being
// provisioned automatically.
type PreNixos struct {
	Lab *lab.Lab
	Key *keys.Pair
	Out io.Writer
	// WantState/WantDetail are the storage-status values expected (default applied /
	// auto-applied).
	WantState, WantDetail string
	// Pause is called after "storage" and "network" (debug mode).
	Pause func(stage string)
	// Timeouts (defaults: 10 min storage, 5 min network, 5 min SSH; scaled by the VM's
	// timeout scale through the caller's context).
	StorageTimeout, NetworkTimeout, SSHTimeout time.Duration
	// Results, filled in as the checks pass.
	Storage status.Status
	IPv4    string
	SSHUser string
}

func (p *PreNixos) say(format string, a ...any) {
	if p.Out != nil {
		fmt.Fprintf(p.Out, "check: "+format+"\n", a...)
	}
}

// Run performs every check.
func (p *PreNixos) Run(ctx context.Context) error {
	ctx = p.Lab.WithProgress(ctx)
	if err := p.CheckStorage(ctx); err != nil {
		return err
	}
	if p.Pause != nil {
		p.Pause("storage")
	}
	if err := p.CheckNetwork(ctx); err != nil {
		return err
	}
	if p.Pause != nil {
		p.Pause("network")
	}
	return p.CheckSSH(ctx)
}

func scaledTimeout(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// CheckStorage waits for storage-status and the profile's pre-nixos unit to finish,
// compares STATE and DETAIL, and checks the unit ended in the state the profile expects
// after success.
func (p *PreNixos) CheckStorage(ctx context.Context) error {
	ctx = p.Lab.WithProgress(ctx)
	l := p.Lab
	prof := l.Profile()
	unit := prof.PreNixosUnit
	if unit == "" {
		return fmt.Errorf("image profile %q names no pre-nixos unit: it does not run pre-nixos", prof.Name)
	}
	wctx, cancel := context.WithTimeout(ctx, scaledTimeout(p.StorageTimeout, 10*time.Minute))
	defer cancel()
	// Done means: the status file exists and the unit is no longer running. A unit that
	// failed ends the wait at once (terminal), whatever the file says. Waiting for the
	// file alone would miss a failed unit for the whole timeout; waiting for the unit
	// alone would accept "inactive" before it even started.
	check := fmt.Sprintf(`__u=$(systemctl is-active %s); case $__u in failed) echo failed; exit 3;; esac; test -e %s && [ "$__u" != activating ] && [ "$__u" != reloading ] && { echo $__u; exit 0; }; echo $__u; exit 1`, unit, StorageStatus)
	state, err := l.WaitUntil(wctx, "waiting for "+unit+" to write "+StorageStatus+" and finish", check)
	if err != nil {
		l.WaitFailed(ctx, capture.Wait{Kind: capture.WaitFile, Path: StorageStatus}, "waiting for "+StorageStatus, err)
		return fmt.Errorf("pre-nixos did not finish with %s written: %w", StorageStatus, err)
	}
	l.Mark("storage_status")
	st, err := p.ReadStatus(ctx, StorageStatus)
	if err != nil {
		return err
	}
	p.Storage = st
	want := [2]string{p.WantState, p.WantDetail}
	if want[0] == "" {
		want = [2]string{"applied", "auto-applied"}
	}
	state = strings.TrimSpace(state)
	p.say("storage-status STATE=%s DETAIL=%s (%s is %s)", st["STATE"], st["DETAIL"], unit, state)
	if st["STATE"] != want[0] || st["DETAIL"] != want[1] {
		err := fmt.Errorf("storage-status is STATE=%s DETAIL=%s, want STATE=%s DETAIL=%s", st["STATE"], st["DETAIL"], want[0], want[1])
		l.WaitFailed(ctx, capture.Wait{Kind: capture.WaitFile, Path: StorageStatus}, "checking storage-status", err)
		return err
	}
	// The unit's end state is part of the image's promise (one semantics for the
	// fixture's unit file and the NixOS module): a drift shows here, not in a later wait.
	if prof.PreNixosDone != "" && state != prof.PreNixosDone {
		err := fmt.Errorf("%s is %q after success, the %s profile expects %q", unit, state, prof.Name, prof.PreNixosDone)
		l.WaitFailed(ctx, capture.Wait{Kind: capture.WaitUnit, Unit: unit}, "checking "+unit+"'s state", err)
		return err
	}
	return nil
}

// ReadStatus reads and parses a KEY=VALUE status file with the provisioner's own parser.
func (p *PreNixos) ReadStatus(ctx context.Context, path string) (status.Status, error) {
	r, err := p.Lab.Run(ctx, "cat "+path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	st, err := status.Parse(bytes.NewReader(r.Output))
	if err != nil {
		return nil, fmt.Errorf("parsing %s (%q): %w", path, r.Output, err)
	}
	return st, nil
}

var lanAnnounce = regexp.MustCompile(`LAN IPv4 address: ([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)`)

// CheckNetwork waits for an IPv4 address on `lan` and for pre-nixos's announcement of it
// on the console (read from the guest-only stream, never from command output).
func (p *PreNixos) CheckNetwork(ctx context.Context) error {
	ctx = p.Lab.WithProgress(ctx)
	l := p.Lab
	wctx, cancel := context.WithTimeout(ctx, scaledTimeout(p.NetworkTimeout, 5*time.Minute))
	defer cancel()
	ip, err := l.WaitIPv4(wctx, "lan") // a failure leaves the network captures
	if err != nil {
		return fmt.Errorf("no IPv4 address on lan: %w", err)
	}
	l.Mark("ipv4")
	p.IPv4 = ip
	end := progress.FromContext(ctx).Wait("waiting for pre-nixos to announce the LAN address on the console")
	got, err := l.WaitConsole(wctx, lanAnnounce)
	end(err)
	if err != nil {
		l.WaitFailed(ctx, capture.Wait{Kind: capture.WaitIPv4, Iface: "lan"}, "waiting for the LAN IPv4 announcement on the console", err)
		return fmt.Errorf("pre-nixos did not announce the LAN address on the console: %w", err)
	}
	if m := lanAnnounce.FindStringSubmatch(got); m == nil || m[1] != ip {
		return fmt.Errorf("console announced %q but lan has %s", got, ip)
	}
	p.say("lan has %s, announced on the console", ip)
	return nil
}

// HostKey reads the guest's ed25519 host key over the console: it is what SSH is then
// pinned to, so a different server on the forwarded port is refused.
func (p *PreNixos) HostKey(ctx context.Context) (string, error) {
	prof := p.Lab.Profile()
	if prof.HostKey == "" {
		return "", fmt.Errorf("image profile %q names no SSH host key", prof.Name)
	}
	r, err := p.Lab.Run(ctx, "cat "+prof.HostKey)
	if err != nil {
		return "", fmt.Errorf("reading the guest host key over the console: %w", err)
	}
	return strings.TrimSpace(string(r.Output)), nil
}

// CheckSSH logs in as root with the embedded key and runs `id -un`.
func (p *PreNixos) CheckSSH(ctx context.Context) error {
	ctx = p.Lab.WithProgress(ctx)
	l := p.Lab
	line, err := p.HostKey(ctx)
	if err != nil {
		return err
	}
	hk, err := sshc.ParseHostKey(line)
	if err != nil {
		return err
	}
	port := l.SSHPort()
	if port == 0 {
		return fmt.Errorf("the VM has no SSH port forward")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	sctx, cancel := context.WithTimeout(ctx, scaledTimeout(p.SSHTimeout, 5*time.Minute))
	defer cancel()
	end := progress.FromContext(ctx).Wait("waiting for SSH as root on " + addr)
	c, err := sshc.Dial(sctx, addr, "root", p.Key.Signer, hk)
	end(err)
	if err != nil {
		l.WaitFailed(ctx, capture.Wait{Kind: capture.WaitSSH, Unit: l.Profile().SSHUnit}, "logging in over SSH as root", err)
		return fmt.Errorf("SSH as root to %s: %w", addr, err)
	}
	defer c.Close()
	out, status, err := c.Run(sctx, "id -un")
	if err != nil || status != 0 {
		return fmt.Errorf("running id -un over SSH: status %d: %v (%q)", status, err, out)
	}
	p.SSHUser = strings.TrimSpace(string(out))
	if p.SSHUser != "root" {
		return fmt.Errorf("SSH id -un printed %q, want root", out)
	}
	l.Mark("ssh")
	p.say("ssh root@%s with the embedded key (%s), host key pinned from the console: id -un = root", addr, p.Key.Fingerprint)
	return nil
}
