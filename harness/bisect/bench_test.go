package bisect

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkSearch bisects every first-bad position of an N-list with k
// workers (in memory, a fake prober) and reports the boots and rounds a
// user would wait for, next to the budget docs/bisect.md promises:
// probes/op and rounds/op are means over positions, max-* the worst case,
// budget-rounds is ceil(log_(k+1) N)+2.
func BenchmarkSearch(b *testing.B) {
	for _, n := range []int{8, 16, 64, 256, 1024} {
		for _, k := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("N=%d/k=%d", n, k), func(b *testing.B) {
				var probes, rounds, maxProbes, maxRounds, runs int
				for b.Loop() {
					for f := 1; f < n; f++ {
						res, err := Run(context.Background(), memConfig(n, k, 0), &fakeProber{firstBad: f})
						if err != nil || res.FirstBad != f {
							b.Fatalf("N=%d k=%d first bad %d: got %v, %v", n, k, f, res.FirstBad, err)
						}
						probes += len(res.Probes)
						rounds += res.Rounds
						maxProbes = max(maxProbes, len(res.Probes))
						maxRounds = max(maxRounds, res.Rounds)
						runs++
					}
				}
				b.ReportMetric(float64(probes)/float64(runs), "probes/op")
				b.ReportMetric(float64(rounds)/float64(runs), "rounds/op")
				b.ReportMetric(float64(maxProbes), "max-probes")
				b.ReportMetric(float64(maxRounds), "max-rounds")
				b.ReportMetric(float64(ceilLog(k+1, n)+2), "budget-rounds")
			})
		}
	}
}
