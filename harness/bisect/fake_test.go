package bisect

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeProber judges candidate i bad when i >= firstBad. flakyBad makes a
// bad candidate show bad only with that probability, drawn from a hash of
// (seed, index, attempt) so the answer does not depend on goroutine order.
type fakeProber struct {
	firstBad int
	skip     map[int]bool
	flakyBad float64
	seed     uint64
	delay    time.Duration

	mu          sync.Mutex
	calls       []attemptKey
	inflight    int
	maxInflight int
	// cancelAfter, with cancel, interrupts the bisection after that many
	// completed probes (a crash or Ctrl-C half way).
	cancelAfter int
	cancel      context.CancelFunc
}

func (f *fakeProber) Probe(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
	var idx int
	if _, err := fmt.Sscanf(c.Name, "c%d", &idx); err != nil {
		return Outcome{}, fmt.Errorf("fake prober got candidate %q: %w", c.Name, err)
	}
	f.mu.Lock()
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight--
	if ctx.Err() != nil {
		return Outcome{}, ctx.Err()
	}
	f.calls = append(f.calls, attemptKey{idx, attempt})
	if f.cancel != nil && len(f.calls) >= f.cancelAfter {
		f.cancel()
	}
	switch {
	case f.skip[idx]:
		return Outcome{Verdict: Skip, Reason: "fake: image does not boot"}, nil
	case idx < f.firstBad:
		return Outcome{Verdict: Good}, nil
	case f.flakyBad > 0 && f.draw(idx, attempt) >= f.flakyBad:
		return Outcome{Verdict: Good, Reason: "fake: bug did not show this time"}, nil
	default:
		return Outcome{Verdict: Bad, Reason: "fake: regression seen"}, nil
	}
}

func (f *fakeProber) draw(idx, attempt int) float64 {
	// splitmix64: well mixed even for neighbouring inputs, unlike a
	// short-string FNV hash.
	z := f.seed*0x9e3779b97f4a7c15 + uint64(idx)<<32 + uint64(attempt) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / float64(1<<53)
}

func (f *fakeProber) numCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func candidates(n int) []Candidate {
	cs := make([]Candidate, n)
	for i := range cs {
		cs[i] = Candidate{Name: fmt.Sprintf("c%02d", i), ISO: fmt.Sprintf("/images/c%02d.iso", i)}
	}
	return cs
}

// ceilLog is the smallest r with base^r >= n, in integers so that exact
// powers do not suffer from float rounding.
func ceilLog(base, n int) int {
	r, p := 0, 1
	for p < n {
		p *= base
		r++
	}
	return r
}

func TestCeilLog(t *testing.T) {
	require.Equal(t, 0, ceilLog(2, 1))
	require.Equal(t, 6, ceilLog(2, 64))
	require.Equal(t, 7, ceilLog(2, 65))
	require.Equal(t, 3, ceilLog(4, 64))
	require.Equal(t, 4, ceilLog(3, 64))
	require.Equal(t, int(math.Ceil(math.Log(50)/math.Log(5))), ceilLog(5, 50))
}
