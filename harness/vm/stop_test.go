package vm

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/shell"
)

// guestLine is a console whose guest side the test writes to.
func guestLine(t *testing.T) (*console.Console, net.Conn) {
	t.Helper()
	host, guest := net.Pipe()
	t.Cleanup(func() { host.Close(); guest.Close() })
	go func() { // the guest reads what is typed and throws it away
		b := make([]byte, 256)
		for {
			if _, err := guest.Read(b); err != nil {
				return
			}
		}
	}()
	return console.New(host, console.Options{}), guest
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_, err := c.Write([]byte(s))
	require.NoError(t, err)
}

// TestWatchPoweroffEndsOnEvidence: what the console shows after a typed poweroff ends
// the guest stage early (a refusal, or the prompt back with no progress within the
// grace) or lets it run (shutdown progress; systemctl's prompt coming back).
func TestWatchPoweroffEndsOnEvidence(t *testing.T) {
	const grace = 300 * time.Millisecond
	cases := []struct {
		name, typed, shows string
		async              bool
		want               string // "" = the stage goes on
	}{
		{"PID 1 ignores it: the prompt is back", "poweroff", "poweroff\r\n/ # ", false, "the shell's prompt came back and no shutdown progress followed within 300ms"},
		{"no such command", "poweroff", "poweroff\r\nsh: poweroff: not found\r\n/ # ", false, "sh: poweroff: not found and no shutdown progress followed within 300ms"},
		{"busybox init goes down", "poweroff", "poweroff\r\n/ # \r\nThe system is going down NOW!\r\n", false, ""},
		{"systemd goes down", "systemctl poweroff", "systemctl poweroff\r\n# \r\n[  OK  ] Reached target System Power Off.\r\n", true, ""},
		{"systemctl's prompt says nothing", "systemctl poweroff", "systemctl poweroff\r\n# ", true, ""},
		{"systemctl refused", "systemctl poweroff", "systemctl poweroff\r\nFailed to power off system via logind: Access denied\r\n# ", true, "Failed to power off system via logind: Access denied and no shutdown progress followed within 300ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			con, g := guestLine(t)
			write(t, g, "/ # ")
			require.Eventually(t, func() bool { return con.Pos() == 4 }, time.Second, 5*time.Millisecond)
			pos := con.Pos()
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			got := make(chan string, 1)
			start := time.Now()
			go func() { got <- watchPoweroff(ctx, con, pos, shell.DefaultShellPrompt, grace, tc.async) }()
			write(t, g, tc.shows)
			why := <-got
			require.Equal(t, tc.want, why)
			if tc.want != "" {
				require.Less(t, time.Since(start), time.Second, "ended on the evidence, not the stage's timeout")
			}
		})
	}
}
