package status

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name, in string
		want     Status
		wantErr  string
	}{
		{name: "storage", in: "STATE=applied\nDETAIL=auto-applied\n", want: Status{"STATE": "applied", "DETAIL": "auto-applied"}},
		{name: "crlf from serial", in: "LAN_IPV4=10.0.2.15\r\n", want: Status{"LAN_IPV4": "10.0.2.15"}},
		{name: "no trailing newline", in: "STATE=failed", want: Status{"STATE": "failed"}},
		{name: "blank and comment", in: "\n# hi\nSTATE=plan-only\n\n", want: Status{"STATE": "plan-only"}},
		{name: "value with equals", in: "ERROR=a=b\n", want: Status{"ERROR": "a=b"}},
		{name: "empty value", in: "ERROR=\n", want: Status{"ERROR": ""}},
		{name: "empty file", in: "", want: Status{}},
		{name: "no equals", in: "STATE applied\n", wantErr: "has no '='"},
		{name: "lower key", in: "state=applied\n", wantErr: "invalid key"},
		{name: "empty key", in: "=x\n", wantErr: "invalid key"},
		{name: "duplicate", in: "STATE=a\nSTATE=b\n", wantErr: "repeated"},
		{name: "too long", in: "ERROR=" + strings.Repeat("x", 5000) + "\n", wantErr: "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestFormatOrderAndRoundTrip(t *testing.T) {
	in := Status{"ZED": "1", KeyDetail: DetailAutoApplied, KeyState: StateApplied, "ALPHA": "x", KeyError: "line1\nline2"}
	b, err := Format(in)
	require.NoError(t, err)
	assert.Equal(t, "STATE=applied\nDETAIL=auto-applied\nERROR=line1 line2\nALPHA=x\nZED=1\n", string(b))
	back, err := Parse(strings.NewReader(string(b)))
	require.NoError(t, err)
	assert.Equal(t, "applied", back.State())
	assert.Equal(t, "auto-applied", back.Detail())
}

func TestDir(t *testing.T) {
	assert.Equal(t, "/run/pre-nixos", Dir(func(string) string { return "" }))
	assert.Equal(t, "/tmp/s", Dir(func(string) string { return "/tmp/s" }))
}

func FuzzParse(f *testing.F) {
	f.Add("STATE=applied\nDETAIL=auto-applied\n")
	f.Add("LAN_IPV4=10.0.2.15\r\n")
	f.Add("# c\n\nX=\n")
	f.Fuzz(func(t *testing.T, in string) {
		st, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever parses must format and parse back to the same map.
		b, err := Format(st)
		if err != nil {
			t.Fatalf("Format of parsed status failed: %v", err)
		}
		back, err := Parse(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("reparse of %q failed: %v", b, err)
		}
		if len(back) != len(st) {
			t.Fatalf("round trip changed key count: %v vs %v", st, back)
		}
		for k, v := range st {
			if back[k] != v {
				t.Fatalf("round trip changed %s: %q -> %q", k, v, back[k])
			}
		}
	})
}

func TestNotice(t *testing.T) {
	net := Status{KeyLANIPv4: "10.0.2.15"}
	cases := []struct {
		st   Status
		want string
	}{
		{Status{KeyState: StateApplied, KeyDetail: DetailAutoApplied}, "pre-nixos: Storage provisioning completed automatically.\n"},
		{Status{KeyState: StatePlanOnly, KeyDetail: DetailExistingStorage}, "pre-nixos: Existing storage detected; provisioning ran in plan-only mode.\n"},
		{Status{KeyState: StatePlanOnly, KeyDetail: DetailDetectionError}, "journalctl -u pre-nixos"},
		{Status{KeyState: StatePlanOnly, KeyDetail: "execution-disabled"}, "plan-only mode. Review before applying.\n"},
		{Status{KeyState: StateFailed, KeyDetail: DetailAutoApplied, KeyError: "boom"}, "pre-nixos: Provisioning failed.\nError: boom\n"},
		{Status{KeyState: "weird", KeyDetail: "x"}, "Provisioning status is 'weird' (x)."},
		{Status{KeyState: StateInProgress, KeyDetail: DetailStarted}, "in progress (or was interrupted)"},
		{Status{KeyState: StateApplied, KeyDetail: DetailManualApply}, "completed (applied manually)"},
		{Status{KeyState: StateFailed, KeyDetail: DetailInventoryError, KeyError: "x"}, "could not be read; nothing was applied"},
	}
	for _, tc := range cases {
		got := Notice(tc.st, net, "1.2")
		assert.True(t, strings.HasPrefix(got, "pre-nixos boot image version 1.2\n"), got)
		assert.Contains(t, got, tc.want)
		assert.True(t, strings.HasSuffix(got, "LAN IPv4 address: 10.0.2.15\n"), got)
	}
	assert.Equal(t, "", Notice(nil, nil, ""))
}
