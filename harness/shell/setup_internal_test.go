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
