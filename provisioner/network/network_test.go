package network

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/provisioner/execpolicy"
	fr "github.com/bootlab/bootlab/provisioner/execpolicy/fakerunner"
	"github.com/bootlab/bootlab/provisioner/logging"
)

// nic creates sysfs/class/net/<name> with a device link and attributes.
func nic(t *testing.T, sysfs, name string, device bool, attrs map[string]string) {
	t.Helper()
	dir := filepath.Join(sysfs, "class/net", name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	if device {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "device"), 0o755))
	}
	for k, v := range attrs {
		require.NoError(t, os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644))
	}
}

func TestIdentifyLAN(t *testing.T) {
	sys := t.TempDir()
	nic(t, sys, "lo", false, map[string]string{"carrier": "1"})
	nic(t, sys, "eth0", true, map[string]string{"carrier": "0", "operstate": "down"})
	nic(t, sys, "eth1", true, map[string]string{"carrier": "1", "operstate": "up"})
	var logs bytes.Buffer
	got, err := IdentifyLAN(filepath.Join(sys, "class/net"), logging.New(&logs, slog.LevelInfo))
	require.NoError(t, err)
	assert.Equal(t, "eth1", got)
	assert.Contains(t, logs.String(), `"signal":"carrier"`)
}

func TestIdentifyLANOperstateFallback(t *testing.T) {
	for name, errno := range map[string]error{"EINVAL": syscall.EINVAL, "errno 0": syscall.Errno(0), "ENODEV": syscall.ENODEV} {
		t.Run(name, func(t *testing.T) {
			sys := t.TempDir()
			nic(t, sys, "ens3", true, map[string]string{"carrier": "", "operstate": "UP"})
			old := readFile
			t.Cleanup(func() { readFile = old })
			readFile = func(p string) ([]byte, error) {
				if strings.HasSuffix(p, "/carrier") {
					return nil, &fs.PathError{Op: "read", Path: p, Err: errno}
				}
				return os.ReadFile(p)
			}
			var logs bytes.Buffer
			got, err := IdentifyLAN(filepath.Join(sys, "class/net"), logging.New(&logs, slog.LevelInfo))
			require.NoError(t, err)
			assert.Equal(t, "ens3", got)
			assert.Contains(t, logs.String(), `"signal":"operstate"`)
		})
	}
	t.Run("other errors propagate", func(t *testing.T) {
		sys := t.TempDir()
		nic(t, sys, "ens3", true, nil)
		old := readFile
		t.Cleanup(func() { readFile = old })
		readFile = func(p string) ([]byte, error) { return nil, &fs.PathError{Op: "read", Path: p, Err: syscall.EIO} }
		_, err := IdentifyLAN(filepath.Join(sys, "class/net"), slog.New(slog.DiscardHandler))
		assert.ErrorContains(t, err, "reading carrier of ens3")
	})
	t.Run("missing carrier uses operstate", func(t *testing.T) {
		sys := t.TempDir()
		nic(t, sys, "ens3", true, map[string]string{"operstate": "up"})
		got, err := IdentifyLAN(filepath.Join(sys, "class/net"), slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		assert.Equal(t, "ens3", got)
	})
}

func TestLinkUnit(t *testing.T) {
	assert.Equal(t, "[Match]\nOriginalName=eth1\nMACAddress=00:11:22:33:44:55\n\n[Link]\nName=lan\n", LinkUnit("eth1", "00:11:22:33:44:55"))
	assert.Equal(t, "[Match]\nMACAddress=aa:bb:cc:dd:ee:ff\n\n[Link]\nName=lan\n", LinkUnit("", "AA:BB:CC:DD:EE:FF"))
}

func cfg(t *testing.T, sys string, r execpolicy.Runner, exec bool) (Config, string) {
	root := t.TempDir()
	return Config{SysfsRoot: sys, Root: execpolicy.Root{Dir: root}, Runner: r, Exec: exec, Sleep: func(time.Duration) {}, LANAttempts: 2, IPv4Attempts: 3}, root
}

func TestConfigure(t *testing.T) {
	sys := t.TempDir()
	nic(t, sys, "ens3", true, map[string]string{"carrier": "1", "address": "52:54:00:12:34:56"})
	r := fr.New(t, append(fr.Ok("ip link set ens3 up", "ip link set ens3 down", "ip link set ens3 name lan", "ip link set lan up"),
		fr.Call{Cmd: "systemctl restart systemd-networkd", Exit: 5})...)
	c, root := cfg(t, sys, r, true)
	res, err := Configure(context.Background(), c)
	require.NoError(t, err)
	assert.Equal(t, Result{Interface: "lan", OriginalName: "ens3", MAC: "52:54:00:12:34:56"}, res)
	link, err := os.ReadFile(filepath.Join(root, LinkFile))
	require.NoError(t, err)
	assert.Equal(t, "[Match]\nOriginalName=ens3\nMACAddress=52:54:00:12:34:56\n\n[Link]\nName=lan\n", string(link))
	unit, err := os.ReadFile(filepath.Join(root, NetworkFile))
	require.NoError(t, err)
	assert.Equal(t, "[Match]\nName=lan\n\n[Network]\nDHCP=yes\n", string(unit))
}

// On a rerun the NIC is already `lan`: keep the original name from the old
// .link file and do not bounce the link.
func TestConfigureRerunKeepsOriginalName(t *testing.T) {
	sys := t.TempDir()
	nic(t, sys, "lan", true, map[string]string{"carrier": "1", "address": "52:54:00:12:34:56"})
	r := fr.New(t, fr.Ok("ip link set lan up", "systemctl restart systemd-networkd")...)
	c, root := cfg(t, sys, r, true)
	require.NoError(t, os.MkdirAll(filepath.Join(root, NetworkDir), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, LinkFile), []byte(LinkUnit("enp1s0", "52:54:00:12:34:56")), 0o644))
	_, err := Configure(context.Background(), c)
	require.NoError(t, err)
	link, _ := os.ReadFile(filepath.Join(root, LinkFile))
	assert.Contains(t, string(link), "OriginalName=enp1s0\n")
}

func TestConfigureNoNIC(t *testing.T) {
	sys := t.TempDir()
	nic(t, sys, "eth0", true, map[string]string{"carrier": "0", "operstate": "down"})
	nic(t, sys, "lo", false, map[string]string{"carrier": "1"})
	c, root := cfg(t, sys, fr.New(t, fr.Ok("ip link set eth0 up", "ip link set eth0 up")...), true)
	_, err := Configure(context.Background(), c)
	assert.ErrorIs(t, err, ErrNoNIC)
	assert.NoFileExists(t, filepath.Join(root, LinkFile))

	c, _ = cfg(t, filepath.Join(t.TempDir(), "nothing"), fr.New(t), true)
	_, err = Configure(context.Background(), c)
	assert.ErrorContains(t, err, "listing network interfaces")
}

func TestDryRunLogsCommands(t *testing.T) {
	sys := t.TempDir()
	nic(t, sys, "eth0", true, map[string]string{"carrier": "1"})
	var logs bytes.Buffer
	log := logging.New(&logs, slog.LevelInfo)
	c, _ := cfg(t, sys, execpolicy.Policy{Inner: fr.New(t), Log: log}, false)
	c.Log = log
	_, err := Configure(context.Background(), c)
	require.NoError(t, err)
	for _, ev := range []string{"configure_lan.start", "configure_lan.detected_interface", "configure_lan.finished", "pre_nixos.command.skip"} {
		assert.Contains(t, logs.String(), ev)
	}
	ip, err := WaitIPv4(context.Background(), c, "lan")
	require.NoError(t, err)
	assert.Empty(t, ip)
}

const ipJSON = `[{"ifindex":2,"ifname":"lan","addr_info":[{"family":"inet","local":"198.51.100.7","prefixlen":24}]}]`

func TestParseIPv4(t *testing.T) {
	cases := map[string]struct{ in, want, err string }{
		"address":   {ipJSON, "198.51.100.7", ""},
		"empty":     {"[]", "", ""},
		"no output": {"", "", ""},
		"inet6":     {`[{"addr_info":[{"family":"inet6","local":"fe80::1"}]}]`, "", ""},
		"malformed": {`[{"addr_info":[`, "", "parsing ip -j output"},
		"not list":  {`{"addr_info":[]}`, "", "parsing ip -j output"},
		"bad addr":  {`[{"addr_info":[{"family":"inet","local":"300.1.1.1"}]}]`, "", "bad IPv4 address"},
	}
	for name, tc := range cases {
		got, err := ParseIPv4([]byte(tc.in))
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, name)
			continue
		}
		require.NoError(t, err, name)
		assert.Equal(t, tc.want, got, name)
	}
}

func TestWaitIPv4(t *testing.T) {
	r := fr.New(t, fr.Call{Cmd: "ip -j -4 addr show lan", Stdout: "[]"}, fr.Call{Cmd: "ip -j -4 addr show lan", Exit: 1}, fr.Call{Cmd: "ip -j -4 addr show lan", Stdout: ipJSON})
	c, _ := cfg(t, t.TempDir(), r, true)
	ip, err := WaitIPv4(context.Background(), c, "lan")
	require.NoError(t, err)
	assert.Equal(t, "198.51.100.7", ip)

	r = fr.New(t, fr.Call{Cmd: "ip -j -4 addr show lan", Stdout: "[]"}, fr.Call{Cmd: "ip -j -4 addr show lan", Stdout: "[]"}, fr.Call{Cmd: "ip -j -4 addr show lan", Stdout: "{"})
	c, _ = cfg(t, t.TempDir(), r, true)
	_, err = WaitIPv4(context.Background(), c, "lan")
	assert.ErrorIs(t, err, ErrNoIPv4)
	assert.ErrorContains(t, err, "parsing ip -j output")
}

// Malformed `ip -j` output must give an error or an address, never a panic.
func FuzzParseIPv4(f *testing.F) {
	f.Add([]byte(ipJSON))
	f.Add([]byte(`[{"addr_info":null}]`))
	f.Add([]byte(`[null]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		ip, err := ParseIPv4(in)
		if err == nil && ip != "" && strings.Count(ip, ".") != 3 {
			t.Fatalf("accepted non-IPv4 %q", ip)
		}
	})
}
