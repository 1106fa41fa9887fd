package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNightCommand: bootlab night's usage mistakes exit 2 before it writes anything,
// and a night without runs is reported red and recorded in the history.
func TestNightCommand(t *testing.T) {
	notes, history := t.TempDir(), filepath.Join(t.TempDir(), "history")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"night", "--notes", notes, "--id", "1"}, "--history is required"},
		{[]string{"night", "--notes", notes, "--history", history}, "--id is required"},
		{[]string{"night", "--notes", filepath.Join(notes, "missing"), "--history", history, "--id", "1"}, "--notes"},
		{[]string{"night", "--notes", notes, "--history", history, "--id", "1", "extra"}, "unexpected arguments"},
	} {
		var out, errb bytes.Buffer
		require.Equal(t, exitUsage, Main(tc.args, &out, &errb), "%v", tc.args)
		require.Contains(t, errb.String(), tc.msg)
		require.NoDirExists(t, history, "a usage error writes nothing")
	}
	var out, errb bytes.Buffer
	require.Equal(t, 0, Main([]string{"night", "--notes", notes, "--history", history, "--id", "7", "--artifact", "work-notes-merged"}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "## Tonight: red")
	require.Contains(t, out.String(), "🔴 red")
	_, err := os.Stat(filepath.Join(history, "nights.jsonl"))
	require.NoError(t, err, "tonight is recorded in the history")
}
