package dialog

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOnScreenNeedsEveryText(t *testing.T) {
	screen := "  Select a language  \n  English  \n  <Go Back>  "
	require.True(t, OnScreen(screen, "Select a language", "<Go Back>"))
	require.False(t, OnScreen(screen, "Select a language", "Execute a shell"))
}

// TestLastRowSkipsBlankRows: the shell's prompt is matched on the last row with text,
// not on the blank rows a 24-line screen has below it.
func TestLastRowSkipsBlankRows(t *testing.T) {
	require.Equal(t, "~ #", LastRow("BusyBox v1.35\n\n~ #   \n      \n\n"))
}
