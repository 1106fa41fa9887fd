package shell

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPromptTailSeesThePromptBehindKernelLines(t *testing.T) {
	for _, c := range []struct {
		name, text, want string
	}{
		{"plain prompt", "boot\n/ # ", "/ # "},
		{"output line", "boot\nhello\n", ""},
		{"kernel message on the prompt's line", "boot\n/ # [    5.123456] tsc: Refined TSC clocksource calibration: 2096.064 MHz\n", "/ # "},
		{"then more kernel lines", "boot\n/ # [    5.123456] tsc: Refined TSC\n[    5.130000] clocksource: Switched to clocksource tsc\n", "/ # "},
		{"one still being printed", "boot\n/ # [    5.123456] tsc: Refined TSC\n[    5.13] clocks", "/ # "},
		{"kernel line after a finished prompt line", "fixture login: \n[   80.1] random: crng init done\n", "fixture login: "},
		{"kernel lines only", "[    0.000000] Linux version 6.1\n[    0.1] x\n", ""},
		{"boot log then a prompt", "[    0.000000] Linux version 6.1\nroot@fixture:~# ", "root@fixture:~# "},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, at := promptTail(c.text)
			require.Equal(t, c.want, got)
			if got != "" {
				require.Equal(t, got, c.text[at:at+len(got)], "the offset points at the prompt")
			}
		})
	}
}
