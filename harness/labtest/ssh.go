package labtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/keys"
	"github.com/bootlab/bootlab/harness/sshc"
)

// OtherKey is a fresh key pair that is not bootlab's (an image carrying it lets bootlab
// in nowhere).
func OtherKey(t testing.TB) *keys.Pair {
	t.Helper()
	k, err := keys.LoadOrCreate(t.TempDir())
	require.NoError(t, err, "making a second key pair")
	return k
}

// SSHRefusesOtherHostKey says whether SSH as root to m, pinned to a host key that is
// not the guest's, is refused as a host key mismatch (the pin is what stops a different
// server on the forwarded port).
func SSHRefusesOtherHostKey(t testing.TB, m *Machine) bool {
	t.Helper()
	ctx, cancel := deadline(2 * time.Minute)
	defer cancel()
	c, err := sshc.Dial(ctx, m.SSHAddr(), "root", m.Key().Signer, OtherKey(t).Signer.PublicKey())
	if c != nil {
		c.Close()
	}
	var mismatch *sshc.HostKeyMismatch
	if !errors.As(err, &mismatch) {
		t.Logf("SSH with another pinned host key: %v", err)
		return false
	}
	return true
}

// SSHRefusesPasswords says whether the guest's sshd refuses password logins for root
// (its host key pinned from the console).
func SSHRefusesPasswords(t testing.TB, m *Machine) bool {
	t.Helper()
	hk, err := sshc.ParseHostKey(m.HostKey())
	require.NoError(t, err, "parsing the guest's host key")
	ctx, cancel := deadline(2 * time.Minute)
	defer cancel()
	refused, err := sshc.PasswordRefused(ctx, m.SSHAddr(), "root", hk)
	require.NoError(t, err, "trying a password login")
	return refused
}

// ListeningAddrs lists the local IPv4 addresses this host listens on at addr's port
// (/proc/net/tcp), e.g. where QEMU bound a forwarded port.
func ListeningAddrs(t testing.TB, addr string) []string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(port)
	require.NoError(t, err)
	f, err := os.Open("/proc/net/tcp")
	require.NoError(t, err)
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st ...; addresses are hex IP:port, the IP in
		// host (little-endian) byte order; st 0A is LISTEN.
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		ip, p, ok := strings.Cut(fields[1], ":")
		if !ok || p != fmt.Sprintf("%04X", n) || len(ip) != 8 {
			continue
		}
		v, err := strconv.ParseUint(ip, 16, 32)
		if err != nil {
			continue
		}
		out = append(out, net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)).String())
	}
	require.NoError(t, sc.Err())
	return out
}
