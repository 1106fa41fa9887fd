package scenarios

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/keys"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/sshc"
	"github.com/bootlab/bootlab/harness/vm"
)

// Scenario 2: the NIC is renamed lan, leases 10.0.2.15, pre-nixos announces it on the
// console, and root gets in over SSH with the embedded key, host key pinned.
func TestNetwork(t *testing.T) {
	s := standard(t)
	require.NoError(t, s.err, "pre-nixos checks on the standard VM (run directory %s)", s.l.Dir())
	require.Equal(t, "10.0.2.15", s.checks.IPv4)
	require.Contains(t, run(t, s.l, "ip -o link show lan"), "lan:")
	// ip resolves alternative names, so look at the interface names themselves.
	names := strings.Fields(run(t, s.l, "ls /sys/class/net"))
	require.Contains(t, names, "lan")
	require.NotContains(t, names, "ens4", "the NIC was renamed, not duplicated")
	ns, err := s.checks.ReadStatus(context.Background(), "/run/pre-nixos/network-status")
	require.NoError(t, err)
	require.Contains(t, ns, "LAN_IPV4")
	require.Equal(t, "10.0.2.15", ns["LAN_IPV4"])
	// The announcement is asserted on serial.log, the guest's own bytes, so the harness's
	// keystrokes can never satisfy it.
	serial, err := os.ReadFile(filepath.Join(s.l.Dir(), vm.SerialLog))
	require.NoError(t, err)
	require.Contains(t, string(serial), "LAN IPv4 address: 10.0.2.15")
	require.Equal(t, "root", s.checks.SSHUser)
	ms := s.l.Metadata()
	_, ok := ms.Milestone("ssh")
	require.True(t, ok, "the ssh milestone is recorded")
}

// Security: SSH refuses a server whose host key differs from the one the console showed,
// and sshd refuses passwords.
func TestSSHPinningAndNoPasswords(t *testing.T) {
	s := standard(t)
	require.NoError(t, s.err)
	addr := s.l.SSHAddr()
	require.NotEmpty(t, addr, "the VM forwards SSH")
	other, err := keys.LoadOrCreate(t.TempDir())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), scaled(2*time.Minute))
	defer cancel()
	_, err = sshc.Dial(ctx, addr, "root", s.key.Signer, other.Signer.PublicKey())
	var mismatch *sshc.HostKeyMismatch
	require.True(t, errors.As(err, &mismatch), "a different host key is refused, got %v", err)
	line, err := s.checks.HostKey(ctx)
	require.NoError(t, err)
	hk, err := sshc.ParseHostKey(line)
	require.NoError(t, err)
	refused, err := sshc.PasswordRefused(ctx, addr, "root", hk)
	require.NoError(t, err)
	require.True(t, refused, "sshd refuses password logins")
	cfg := run(t, s.l, "sshd -T 2>/dev/null | grep -Ei '^(passwordauthentication|permitrootlogin) '")
	require.Contains(t, cfg, "passwordauthentication no")
	require.Contains(t, cfg, "permitrootlogin without-password", "prohibit-password is printed by sshd -T as without-password")
	// The forwarded port listens on loopback only.
	tcp, err := os.ReadFile("/proc/net/tcp")
	require.NoError(t, err)
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(port)
	require.NoError(t, err)
	hexPort := strings.ToUpper(strconv.FormatInt(int64(n), 16))
	for len(hexPort) < 4 {
		hexPort = "0" + hexPort
	}
	require.Contains(t, string(tcp), "0100007F:"+hexPort, "bound to 127.0.0.1")
	require.NotContains(t, string(tcp), "00000000:"+hexPort+" 00000000:0000 0A", "never bound to 0.0.0.0")
}

// Scenario 3: sshd is not pulled in by multi-user, waits for pre-nixos, and no job is
// stuck once the system settled.
func TestSSHDIndependence(t *testing.T) {
	s := standard(t)
	require.NoError(t, s.err)
	p := s.l.Profile()
	show := run(t, s.l, "systemctl show -p WantedBy,After "+p.SSHUnit)
	require.Contains(t, show, p.PreNixosUnit, "%s is ordered after %s", p.SSHUnit, p.PreNixosUnit)
	for _, line := range strings.Split(show, "\n") {
		if strings.HasPrefix(line, "WantedBy=") {
			require.NotContains(t, line, "multi-user.target", "sshd is held back from multi-user")
		}
	}
	deps := run(t, s.l, "systemctl list-dependencies --reverse --plain --no-pager "+p.SSHUnit)
	require.NotContains(t, deps, "multi-user.target")
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	_, err := s.l.WaitUntil(ctx, "systemctl's job queue to empty", `test -z "$(systemctl list-jobs --no-legend)" || { systemctl list-jobs; false; }`)
	require.NoError(t, err, "systemctl list-jobs is empty once settled")
	require.Equal(t, "active\n", run(t, s.l, "systemctl is-active "+p.SSHUnit), "pre-nixos started sshd itself")
}

// --- one negative test per area: break the image on purpose, see the right failure ---

// Storage: a pre-nixos that exits 1 never writes storage-status; the failure names it
// and the run directory holds the diagnostics and the storage/systemd captures.
func TestNegativeStorageUnitFails(t *testing.T) {
	labtest.Slot(t, 70*time.Second)
	l, key := bootFixture(t, images.FixtureSpec{BreakUnit: "/bin/false"}, labtest.Slug("negative-storage"), labtest.Disks(disk("disk0.img", 4096)), labtest.Network())
	c := checks(l, key, t)
	c.StorageTimeout = scaled(90 * time.Second)
	err := c.CheckStorage(context.Background())
	require.Error(t, err)
	require.Contains(t, err.Error(), "/run/pre-nixos/storage-status")
	requireEvidence(t, l.Dir(), "pre-nixos")
}

// Network: no NIC at all; the IPv4 wait fails and the network captures explain why.
func TestNegativeNetworkNoNIC(t *testing.T) {
	labtest.Slot(t, 80*time.Second)
	l, key := bootFixture(t, images.FixtureSpec{}, labtest.Slug("negative-network"), labtest.Disks(disk("disk0.img", 4096)),
		labtest.Warm("a machine without a NIC fails the same after a restore: there is none to find"))
	c := checks(l, key, t)
	c.NetworkTimeout = scaled(60 * time.Second)
	err := c.CheckNetwork(context.Background())
	require.Error(t, err)
	require.Contains(t, err.Error(), "lan")
	requireEvidence(t, l.Dir(), "ip")
}

// SSH: an image carrying a different root key; the login is refused and says so.
func TestNegativeSSHWrongKey(t *testing.T) {
	labtest.Slot(t, 95*time.Second)
	wrong, err := keys.LoadOrCreate(t.TempDir())
	require.NoError(t, err)
	// The image carries a key that is not bootlab's; bootlab offers its own.
	l, key := bootFixture(t, images.FixtureSpec{RootKey: wrong.AuthorizedKey}, labtest.Slug("negative-ssh"), labtest.Disks(disk("disk0.img", 4096)), labtest.Network())
	c := checks(l, key, t)
	c.SSHTimeout = scaled(3 * time.Minute)
	ctx := context.Background()
	require.NoError(t, c.CheckStorage(ctx))
	require.NoError(t, c.CheckNetwork(ctx))
	err = c.CheckSSH(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "refused the key")
	requireEvidence(t, l.Dir(), "ssh")
}

// requireEvidence checks a failed check left a diagnostic and captures mentioning what.
func requireEvidence(t *testing.T, dir, what string) {
	t.Helper()
	diags, _ := filepath.Glob(filepath.Join(dir, "diagnostics", "*.txt"))
	require.NotEmpty(t, diags, "a diagnostics file explains the failure")
	idx, err := os.ReadFile(filepath.Join(dir, "captures", "index.md"))
	require.NoError(t, err, "captures were taken")
	require.Contains(t, string(idx), what)
}
