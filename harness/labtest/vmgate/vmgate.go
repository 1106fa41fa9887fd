// Package vmgate is the one rule for tests that boot QEMU guests or build images (the
// VM tests): `go test -short` skips them, each with one line saying why (the usual Go
// convention), and a CI run (CI=true) never skips one: -short there, or any other skip of
// a VM test, fails the test instead. It imports nothing of bootlab, so every package
// with VM tests (artifacts/images included) can call it.
package vmgate

import (
	"os"
	"testing"
)

// ShortReason is the line a skipped VM test prints.
const ShortReason = "-short: VM test skipped (it boots QEMU guests or builds images; run without -short)"

// VM marks t as a VM test; call it first. Under -short it skips t, except on CI, where
// it fails t: CI must run every VM test. On CI it also fails t if t skips later for any
// other reason (a missing prerequisite must fail there, not pass silently).
func VM(t testing.TB) {
	t.Helper()
	gate(t, testing.Short(), OnCI())
}

// OnCI says whether this run is a CI run: CI=true, as GitHub Actions and .ci/run set it.
func OnCI() bool { return os.Getenv("CI") == "true" }

func gate(t testing.TB, short, ci bool) {
	t.Helper()
	if ci {
		t.Cleanup(func() {
			if t.Skipped() {
				t.Errorf("CI=true: a VM test skipped; a CI run must run every VM test")
			}
		})
		if short {
			t.Fatalf("CI=true with -short: a CI run must run every VM test (drop -short)")
		}
		return
	}
	if short {
		t.Skip(ShortReason)
	}
}
