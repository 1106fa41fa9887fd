package scenarios

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/labtest"
)

// Scenario 2: the NIC is renamed lan, leases 10.0.2.15, pre-nixos announces it on the
// console, and root gets in over SSH with the embedded key, host key pinned.
func TestNetwork(t *testing.T) {
	m := standard(t)
	pre := m.WaitForPreNixos()
	require.Equal(t, "10.0.2.15", pre.IPv4)
	require.Contains(t, m.Succeed("ip -o link show lan"), "lan:")
	// ip resolves alternative names, so look at the interface names themselves.
	names := strings.Fields(m.Succeed("ls /sys/class/net"))
	require.Contains(t, names, "lan")
	require.NotContains(t, names, "ens4", "the NIC was renamed, not duplicated")
	require.Equal(t, "10.0.2.15", m.Status("/run/pre-nixos/network-status")["LAN_IPV4"])
	// The announcement is asserted on serial.log, the guest's own bytes, so the harness's
	// keystrokes can never satisfy it.
	require.Contains(t, m.Serial(), "LAN IPv4 address: 10.0.2.15")
	require.Equal(t, "root", pre.SSHUser)
	require.True(t, m.HasMilestone("ssh"), "the ssh milestone is recorded")
}

// Security: SSH refuses a server whose host key differs from the one the console showed,
// sshd refuses passwords, and the forwarded port listens on loopback only.
func TestSSHPinningAndNoPasswords(t *testing.T) {
	m := standard(t)
	require.NotEmpty(t, m.SSHAddr(), "the VM forwards SSH")
	require.True(t, labtest.SSHRefusesOtherHostKey(t, m), "a different host key is refused")
	require.True(t, labtest.SSHRefusesPasswords(t, m), "sshd refuses password logins")
	cfg := m.Succeed("sshd -T 2>/dev/null | grep -Ei '^(passwordauthentication|permitrootlogin) '")
	require.Contains(t, cfg, "passwordauthentication no")
	require.Contains(t, cfg, "permitrootlogin without-password", "prohibit-password is printed by sshd -T as without-password")
	require.Equal(t, []string{"127.0.0.1"}, labtest.ListeningAddrs(t, m.SSHAddr()), "bound to 127.0.0.1, never 0.0.0.0")
}

// Scenario 3: sshd is not pulled in by multi-user, waits for pre-nixos, and no job is
// stuck once the system settled.
func TestSSHDIndependence(t *testing.T) {
	m := standard(t)
	p := m.Profile()
	show := m.Succeed("systemctl show -p WantedBy,After " + p.SSHUnit)
	require.Contains(t, show, p.PreNixosUnit, "%s is ordered after %s", p.SSHUnit, p.PreNixosUnit)
	for _, line := range strings.Split(show, "\n") {
		if strings.HasPrefix(line, "WantedBy=") {
			require.NotContains(t, line, "multi-user.target", "sshd is held back from multi-user")
		}
	}
	require.NotContains(t, m.Succeed("systemctl list-dependencies --reverse --plain --no-pager "+p.SSHUnit), "multi-user.target")
	m.WaitUntilSucceeds("systemctl's job queue to empty", `test -z "$(systemctl list-jobs --no-legend)" || { systemctl list-jobs; false; }`)
	require.Equal(t, "active\n", m.Succeed("systemctl is-active "+p.SSHUnit), "pre-nixos started sshd itself")
}

// --- one negative test per area: break the image on purpose, see the right failure ---

// Storage: a pre-nixos that exits 1 never writes storage-status; the failure names it
// and the run directory holds the diagnostics and the storage/systemd captures.
func TestNegativeStorageUnitFails(t *testing.T) {
	m := labtest.Boot(t, labtest.BrokenPreNixos("/bin/false"), labtest.Slug("negative-storage"), labtest.Disks(labtest.Disk("disk0.img", 4096)), labtest.Network(),
		labtest.Warm("the broken unit is a variant's drop-in, written before the release; it fails when it starts, as at boot"))
	require.Contains(t, m.StorageFails(90*time.Second), "/run/pre-nixos/storage-status")
	m.RequireEvidence("pre-nixos")
}

// Network: no NIC at all; the IPv4 wait fails and the network captures explain why.
func TestNegativeNetworkNoNIC(t *testing.T) {
	m := labtest.Boot(t, labtest.Standard(), labtest.Slug("negative-network"), labtest.Disks(labtest.Disk("disk0.img", 4096)),
		labtest.Warm("a machine without a NIC fails the same after a restore: there is none to find"))
	// 30 s: with no NIC there is nothing to wait for; pre-nixos's own LAN wait (60 s)
	// is still running when the check gives up, as at any boot.
	require.Contains(t, m.LANFails(30*time.Second), "lan")
	m.RequireEvidence("ip")
}

// SSH: an image carrying a different root key; the login is refused and says so.
func TestNegativeSSHWrongKey(t *testing.T) {
	// The image carries a key that is not bootlab's; bootlab offers its own.
	m := labtest.Boot(t, labtest.ImageRootKey(labtest.OtherKey(t).AuthorizedKey), labtest.Slug("negative-ssh"), labtest.Disks(labtest.Disk("disk0.img", 4096)), labtest.Network(),
		labtest.Warm("the image's key is a variant's file, written before the release; pre-nixos reads it when it runs"))
	m.WaitForStorage(labtest.Provisioned)
	m.WaitForLAN()
	require.Contains(t, m.SSHFails(3*time.Minute), "refused the key")
	m.RequireEvidence("ssh")
}
