// Package vmgate is the one rule for tests that boot QEMU guests or build images (the
// VM tests): `go test -short` skips them, each with one line saying why (the usual Go
// convention); a CI run (CI=true) fails them under -short instead; and without -short
// no VM test skips: any other skip fails the test. It also hands out the machine's guest
// slots, shared by every test binary (HostSlot). It imports nothing of bootlab, so every package
// with VM tests (artifacts/images included) can call it.
package vmgate

import (
	"os"
	"testing"
)

// ShortReason is the line a skipped VM test prints.
const ShortReason = "-short: VM test skipped (it boots QEMU guests or builds images; run without -short)"

// VM marks t as a VM test (Gate) and holds one of this machine's guest slots until t
// ends (HostSlot); call it first in a test that runs its VMs without t.Parallel.
func VM(t testing.TB) {
	t.Helper()
	Gate(t)
	HostSlot(t)
}

// Gate marks t as a VM test. Under -short it skips t with ShortReason, except on CI,
// where it fails t: CI must run every VM test. Without -short a VM test never skips: a
// later skip for any other reason (a missing prerequisite) fails t, which must say what
// to install instead. It holds no slot: a test that goes parallel afterwards takes its
// slot once it runs (HostSlot after t.Parallel), or paused tests would hold them all.
func Gate(t testing.TB) {
	t.Helper()
	if testing.Short() && !OnCI() {
		t.Skip(ShortReason)
	}
	if testing.Short() {
		t.Fatalf("CI=true with -short: a CI run must run every VM test (drop -short)")
	}
	t.Cleanup(func() {
		if t.Skipped() {
			t.Errorf("a VM test skipped without -short: every VM test runs (a missing prerequisite is a failure that says what to install)")
		}
	})
}

// OnCI says whether this run is a CI run: CI=true, as GitHub Actions and .ci/run set it.
func OnCI() bool { return os.Getenv("CI") == "true" }
