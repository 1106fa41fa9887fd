package main

import (
	"os"
	"testing"

	"github.com/bootlab/bootlab/harness/config"
)

// TestMain is this test binary's edge: runs go to $TMPDIR/bootlab-notes unless
// BOOTLAB_NOTES says otherwise (as labtest does for the VM suites), so a test never
// writes run directories into the checkout; child bootlab processes inherit it.
func TestMain(m *testing.M) {
	if os.Getenv(config.EnvNotes) == "" {
		_ = os.Setenv(config.EnvNotes, config.TestNotes())
	}
	os.Exit(m.Run())
}
