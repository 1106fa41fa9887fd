package vmgate

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// HostSlots is how many VM tests run at once on this machine, across every test binary:
// one per core (at most 8), since a TCG guest keeps one core busy. go test -p runs
// several VM packages at once, and a person may run the scenarios beside them; each
// binary schedules its own tests, and the slots keep the guests of all of them at one
// per core.
var HostSlots = min(runtime.NumCPU(), 8)

// slotDir holds the slots' lock files: one per slot, held with flock(2), so a slot is
// given back however its holder ends (the kernel drops the lock of a killed process).
var slotDir = filepath.Join(os.TempDir(), fmt.Sprintf("bootlab-guest-slots-%d", os.Getuid()))

// held are the tests holding a slot: a test takes at most one, however many of its
// helpers ask (a scenario's own boot after joining a shared machine).
var held sync.Map

// HostSlot waits for one of the machine's HostSlots and holds it until t ends; a second
// call in the same test does nothing. Call it once t runs for real: after t.Parallel in
// a parallel test (a paused test holding a slot would keep the running ones waiting).
func HostSlot(t testing.TB) {
	t.Helper()
	if _, dup := held.LoadOrStore(t, true); dup {
		return
	}
	release, err := AcquireHostSlot()
	if err != nil {
		held.Delete(t)
		t.Fatalf("taking one of the machine's %d guest slots: %v", HostSlots, err)
	}
	t.Cleanup(func() {
		release()
		held.Delete(t)
	})
}

// HoldsHostSlot says whether t holds a slot already (HostSlot): a test that does must
// not wait for a second one, which the tests it waits on may hold.
func HoldsHostSlot(t testing.TB) bool {
	_, ok := held.Load(t)
	return ok
}

// AcquireHostSlot waits for one of the machine's HostSlots, for a guest whose lifetime
// is not one test's (a shared machine's start); release gives it back.
func AcquireHostSlot() (release func(), err error) {
	f, err := acquireSlot(slotDir, HostSlots, 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { _ = f.Close() }) }, nil // closing drops the flock
}

// acquireSlot takes the first free one of n lock files in dir, trying again every poll
// until one is free, and returns it open and locked.
func acquireSlot(dir string, n int, poll time.Duration) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for {
		f, err := tryAcquireSlot(dir, n)
		if f != nil || err != nil {
			return f, err
		}
		time.Sleep(poll)
	}
}

// tryAcquireSlot takes the first free one of n lock files in dir, or returns nil if
// all are held.
func tryAcquireSlot(dir string, n int) (*os.File, error) {
	for i := range max(n, 1) {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("slot-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			return f, nil
		}
		f.Close()
	}
	return nil, nil
}
