package shell

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRejectionWords: the diagnostics busybox ash, dash and bash print for a line they
// refuse, and lines that must not count (kernel messages, a prompt, other commands'
// complaints, the framing function of the channel connect).
func TestRejectionWords(t *testing.T) {
	for text, want := range map[string]string{
		// The VM test's console (issue 26), normalised: the first word lost its ESC.
		"bootlab-2$ sh: ot found\nsh: 1R__bl: not found\nbootlab-2$ ": "sh: 1R__bl: not found",
		"-sh: 1R__bl: not found\n":                                    "-sh: 1R__bl: not found",
		"sh: 1: 1R__bl: not found\n":                                  "sh: 1: 1R__bl: not found",
		"-bash: 1R__blf: command not found\n":                         "-bash: 1R__blf: command not found",
		"sh: syntax error: unterminated quoted string\n":              "sh: syntax error: unterminated quoted string",
		"sh: 1: Syntax error: Unterminated quoted string\n":           "sh: 1: Syntax error: Unterminated quoted string",
		"bash: line 1: syntax error near unexpected token `;'\n":      "bash: line 1: syntax error near unexpected token `;'",
		"[   42.1] md/raid1:md127: active\n":                          "",
		"bootlab-2$ \n":                                               "",
		"sh: foo: not found\n":                                        "",
		"sh: __blc: not found\n":                                      "",
		"ssh: connect to host x: syntax error\n":                      "",
		"sh: 1R__bl: not found":                                       "", // not a whole line yet
	} {
		var r rejection
		require.Equal(t, want, r.feed([]byte(text)), "%q", text)
	}
}
