package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// runMain runs bootlab with args and returns its exit status, stdout and stderr.
func runMain(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	rc := Main(args, &out, &errb)
	return rc, out.String(), errb.String()
}

// Help that was asked for is output (stdout, exit 0), so `bootlab --help | less` shows
// it; misuse goes to stderr with exit 2.
func TestHelpGoesToStdoutWhenAskedFor(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		rc, out, errs := runMain(args...)
		require.Equal(t, exitPass, rc, "%v", args)
		require.Contains(t, out, "usage: bootlab COMMAND", "%v: usage on stdout", args)
		require.Empty(t, errs, "%v: nothing on stderr", args)
	}
	rc, out, errs := runMain()
	require.Equal(t, exitUsage, rc, "no command is misuse")
	require.Empty(t, out)
	require.Contains(t, errs, "usage: bootlab COMMAND")

	for _, args := range [][]string{{"help", "inspect"}, {"inspect", "--help"}, {"bisect", "-h"}} {
		rc, out, errs := runMain(args...)
		require.Equal(t, exitPass, rc, "%v", args)
		require.Contains(t, out, "-", "%v: the command's flags on stdout", args)
		require.Empty(t, errs, "%v: nothing on stderr", args)
	}
	rc, _, errs = runMain("help", "nosuch")
	require.Equal(t, exitUsage, rc)
	require.Contains(t, errs, `unknown command "nosuch"`)
}

func TestVersionNamesTheBuild(t *testing.T) {
	rc, out, _ := runMain("version")
	require.Equal(t, exitPass, rc)
	require.True(t, strings.HasPrefix(out, "bootlab "), "got %q", out)
	require.Contains(t, out, "go1.", "the Go version it was built with")
}

// Flags after a positional argument are flags, not a second argument: `inspect X.iso
// --json` once said "want one ISO".
func TestFlagsMayFollowArguments(t *testing.T) {
	rc, _, errs := runMain("inspect", "/nonexistent/x.iso", "--json")
	require.Equal(t, exitUsage, rc)
	require.NotContains(t, errs, "want one")
	require.Contains(t, errs, "/nonexistent/x.iso", "the image is what is wrong")

	rc, _, errs = runMain("inspect", "--", "--json")
	require.Equal(t, exitUsage, rc)
	require.Contains(t, errs, "--json", "after --, an argument that looks like a flag is an argument")

	rc, out, errs := runMain("inspect", "--bogus", "x.iso")
	require.Equal(t, exitUsage, rc)
	require.Empty(t, out)
	require.Contains(t, errs, "flag provided but not defined: -bogus")
}

// A flag that only works with another is refused without it, before anything runs.
func TestFlagNeedingAnotherIsRefused(t *testing.T) {
	rc, out, errs := runMain("bench", "--variants", "mini")
	require.Equal(t, exitUsage, rc)
	require.Empty(t, out, "nothing was measured")
	require.Contains(t, errs, "--variants only works with --boot")
	rc, _, errs = runMain("bench", "--blame", "3")
	require.Equal(t, exitUsage, rc)
	require.Contains(t, errs, "--blame only works with --boot")
}
