package shell

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSetupLinesFitBusyboxLineEditor: the first setup is typed while echo is still on,
// when busybox ash's line editor breaks any line of 1024 bytes or more (a real mini VM
// showed `syntax error: unexpected newline` and no framing functions).
func TestSetupLinesFitBusyboxLineEditor(t *testing.T) {
	lines := strings.SplitAfter(setupLines(promptFor(12)), "\n")
	require.Equal(t, "", lines[len(lines)-1], "ends with a newline")
	for _, l := range lines[:len(lines)-1] {
		require.Less(t, len(l), maxEditLine, "setup line %q", l[:40])
	}
	require.Contains(t, setupLines(promptFor(12)), "__bl(){")
	require.Contains(t, setupLines(promptFor(12)), "__blf(){")
}

// TestForeignPromptIgnoresTheTailOfItsOwn: the watch can start inside a late copy of the
// shell's own prompt; on the fixture under load that tail ("ootlab-2$ ") was taken for a
// foreign prompt and a healthy command failed as "the root shell is gone".
func TestForeignPromptIgnoresTheTailOfItsOwn(t *testing.T) {
	p := Fixture.withDefaults()
	own := promptFor(2)
	for _, line := range []string{own, "ootlab-2$ ", "$ ", own + own, "ootlab-2$ " + own} {
		require.Empty(t, foreignPrompt(line, true, own, p), "line %q", line)
	}
	require.Contains(t, foreignPrompt(promptFor(1), false, own, p), "shell it was started from")
	require.Contains(t, foreignPrompt("fixture login: ", true, own, p), "login prompt")
	require.Contains(t, foreignPrompt("root@fixture:~# ", true, own, p), "not the harness's")
}
