package labtest

import (
	"sync"
	"testing"
	"time"

	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

// Scheduler hands VM slots to tests that run in parallel: at most n guests up at once,
// and among the tests waiting, the one expected to take longest goes first. Under TCG a
// guest keeps one host core busy, so n is the number of cores; and a suite of a dozen
// runs on two cores ends sooner when its 5-minute runs do not start last (longest
// processing time first). Go resumes all parallel tests at the same moment, so the first
// grant waits gather for the others to line up; after that a free slot goes to the
// longest waiter at once. Its methods are safe for concurrent use.
type Scheduler struct {
	mu      sync.Mutex
	free    int
	gather  time.Duration
	armed   bool // the gather timer runs or has fired
	open    bool // the gather window is over: grants happen as slots free up
	waiting []*waiter
}

type waiter struct {
	expect time.Duration
	ready  chan struct{}
}

// NewScheduler allows n guests at once (at least one).
func NewScheduler(n int, gather time.Duration) *Scheduler {
	return &Scheduler{free: max(n, 1), gather: gather}
}

// Acquire waits for a slot; expect is how long the caller will hold it (an estimate on
// the reference machine: only the order of the waiters depends on it). release gives the
// slot back and is safe to call more than once.
func (s *Scheduler) Acquire(expect time.Duration) (release func()) {
	w := &waiter{expect: expect, ready: make(chan struct{})}
	s.mu.Lock()
	s.waiting = append(s.waiting, w)
	switch {
	case !s.armed:
		s.armed = true
		time.AfterFunc(s.gather, func() {
			s.mu.Lock()
			s.open = true
			s.dispatch()
			s.mu.Unlock()
		})
	case s.open:
		s.dispatch()
	}
	s.mu.Unlock()
	<-w.ready
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.free++
			s.dispatch()
			s.mu.Unlock()
		})
	}
}

// dispatch grants free slots to the longest waiters, the earliest first among equals.
// Called with mu held.
func (s *Scheduler) dispatch() {
	for s.open && s.free > 0 && len(s.waiting) > 0 {
		best := 0
		for i, w := range s.waiting {
			if w.expect > s.waiting[best].expect {
				best = i
			}
		}
		w := s.waiting[best]
		s.waiting = append(s.waiting[:best], s.waiting[best+1:]...)
		s.free--
		close(w.ready)
	}
}

// vmSlots is the scheduler of a test binary's guests: one per host core (at most 8, so
// a big machine does not start more 1 GiB guests than it has memory for).
var vmSlots = NewScheduler(vmSlotCount, 500*time.Millisecond)

// vmSlotCount is how many guests a test binary runs at once.
var vmSlotCount = vmgate.HostSlots

// Slot runs t in parallel with the other tests and waits for one of the binary's VM
// slots, held until t ends; expect is how long t takes on the reference machine (two
// cores, TCG, docs/benchmarks.md), so the longest tests start first. Call it first in
// a test that boots its own guests.
func Slot(t *testing.T, expect time.Duration) {
	t.Helper()
	vmgate.Gate(t)
	parallel(t)
	t.Cleanup(vmSlots.Acquire(expect))
	// Then one of the machine's slots, shared with other test binaries (the VM packages
	// run beside the scenarios): the in-process grant orders this binary's tests longest
	// first, the machine's bounds all guests at one per core.
	vmgate.HostSlot(t)
}

// parallels are the tests parallel has made parallel.
var parallels sync.Map

// parallel calls t.Parallel once per test: a test that looks at a shared machine and
// boots one of its own (a hot-plugged disk compared with the standard machine's) goes
// through both bootShared and Slot, and testing panics on a second call.
func parallel(t *testing.T) {
	if _, dup := parallels.LoadOrStore(t, true); dup {
		return
	}
	t.Cleanup(func() { parallels.Delete(t) })
	t.Parallel()
}
