package labtest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Requests that arrive together are granted longest first, and never more than n hold
// a slot: a suite whose 5-minute scenarios started last would end minutes later.
func TestSchedulerGrantsLongestFirstWithinTheLimit(t *testing.T) {
	order, most := runScheduled(NewScheduler(1, 100*time.Millisecond))
	require.Equal(t, []time.Duration{330, 220, 150, 90, 55, 30}, order, "one slot: the grants in order")
	require.Equal(t, int32(1), most)
	order, most = runScheduled(NewScheduler(2, 100*time.Millisecond))
	require.ElementsMatch(t, []time.Duration{330, 220}, order[:2], "two slots: the two longest first")
	require.Equal(t, int32(2), most, "two slots, two holders at most")
}

// runScheduled has six requests arrive together, each holding its slot briefly, and
// returns the order they were granted in and the most holders at one time.
func runScheduled(s *Scheduler) ([]time.Duration, int32) {
	expects := []time.Duration{30, 330, 90, 220, 150, 55} // seconds, as the scenarios declare
	var (
		mu     sync.Mutex
		order  []time.Duration
		inside atomic.Int32
		most   atomic.Int32
		wg     sync.WaitGroup
	)
	for _, e := range expects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release := s.Acquire(e)
			n := inside.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			mu.Lock()
			order = append(order, e)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			inside.Add(-1)
			release()
			release() // a second release gives nothing back twice
		}()
	}
	wg.Wait()
	return order, most.Load()
}

// A test that joins a shared machine and boots one of its own asks to run in parallel
// twice (bootShared, then Slot); testing panics on the second t.Parallel.
func TestParallelOncePerTest(t *testing.T) {
	ran := false
	// A parallel subtest runs once its parent's function has returned; the parent's
	// cleanups run after it.
	t.Cleanup(func() { require.True(t, ran, "the subtest ran to its end") })
	t.Run("shared-and-own", func(t *testing.T) {
		parallel(t)
		parallel(t)
		ran = true
	})
}
