package scenarios

import (
	"flag"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFlagsHelpReadsRight: the flag package takes a `backquoted` word in a usage string
// as the flag's value name, so "-boot-image-debug" once printed as
// "-boot-image-debug bootlab attach", a boolean that seemed to want a value. No scenario
// flag may have a backquote, and booleans print with no value name at all.
func TestFlagsHelpReadsRight(t *testing.T) {
	n := 0
	flag.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "test.") {
			return
		}
		n++
		require.NotContains(t, f.Usage, "`", "-%s: a backquote in the usage becomes the value name in -help", f.Name)
		name, _ := flag.UnquoteUsage(f)
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
			require.Empty(t, name, "-%s is a switch; -help must not show it taking a value", f.Name)
		}
	})
	require.GreaterOrEqual(t, n, 10, "the scenario flags are registered (main_test.go)")
	var b strings.Builder
	flag.CommandLine.SetOutput(&b)
	defer flag.CommandLine.SetOutput(nil)
	flag.CommandLine.PrintDefaults()
	require.Contains(t, b.String(), "  -boot-image-debug\n", "the help line of -boot-image-debug")
	require.Contains(t, b.String(), "  -pause-after string\n")
}
