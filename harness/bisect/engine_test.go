package bisect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func quickConfig(t testing.TB, dir string, n, k, retries int) Config {
	return Config{Candidates: candidates(n), Dir: dir, Parallel: k, Retries: retries, noSync: true}
}

// memConfig is for the exhaustive search tests: no files at all.
func memConfig(n, k, retries int) Config {
	return Config{Candidates: candidates(n), Dir: "unused", Parallel: k, Retries: retries, memOnly: true}
}

// The "done when": every position of the first bad candidate in
// lists of 1..64, sequentially and with 1..4 workers, within the probe and
// round budgets; positions that break the endpoints (first bad at 0, or no
// bad at all) must stop with an EndpointError after at most two probes.
func TestEveryPositionWithinBudget(t *testing.T) {
	worst := map[int]int{}
	for k := 1; k <= 4; k++ {
		for n := 1; n <= 64; n++ {
			for f := 0; f <= n; f++ {
				fp := &fakeProber{firstBad: f}
				res, err := Run(context.Background(), memConfig(n, k, 0), fp)
				where := fmt.Sprintf("k=%d n=%d firstBad=%d", k, n, f)
				require.LessOrEqual(t, fp.maxInflight, k, where)
				require.Equal(t, len(res.Probes), fp.numCalls(), where)
				if f == 0 || f == n {
					var ee *EndpointError
					require.ErrorAs(t, err, &ee, where)
					require.Equal(t, StatusEndpoints, res.Status, where)
					// k>2 spends its spare workers inside the list
					// in the same round, so that round may cost k boots.
					require.LessOrEqual(t, fp.numCalls(), max(2, k), where)
					require.LessOrEqual(t, res.Rounds, 2, where)
					continue
				}
				require.NoError(t, err, where)
				require.Equal(t, StatusFound, res.Status, where)
				require.Equal(t, f, res.FirstBad, where)
				require.Equal(t, f-1, res.LastGood, where)
				require.LessOrEqual(t, res.Rounds, ceilLog(k+1, n)+2, where)
				if k == 1 {
					require.LessOrEqual(t, fp.numCalls(), ceilLog(2, n)+2, where)
					require.Equal(t, res.Rounds, fp.numCalls(), where)
				}
				worst[k] = max(worst[k], res.Rounds-ceilLog(k+1, n))
			}
		}
	}
	t.Logf("worst rounds above ceil(log_(k+1) N) by k: %v", worst)
}

func TestEndpointViolationsSayWhyAndStop(t *testing.T) {
	cases := []struct {
		name     string
		fp       *fakeProber
		k        int
		want     []string
		maxCalls int
	}{
		{"first is bad", &fakeProber{firstBad: 0}, 1, []string{"first candidate c00 is bad"}, 1},
		{"last is good", &fakeProber{firstBad: 10}, 1, []string{"last candidate c09 is good"}, 2},
		{"both wrong in parallel", &fakeProber{firstBad: 0, skip: map[int]bool{9: true}}, 2,
			[]string{"first candidate c00 is bad", "endpoint c09 could not be tested"}, 2},
		{"first skipped", &fakeProber{firstBad: 5, skip: map[int]bool{0: true}}, 1,
			[]string{"endpoint c00 could not be tested (skip: fake: image does not boot)"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := Run(context.Background(), quickConfig(t, dir, 10, tc.k, 0), tc.fp)
			var ee *EndpointError
			require.ErrorAs(t, err, &ee)
			require.Len(t, ee.Problems, len(tc.want))
			for i, w := range tc.want {
				require.Contains(t, ee.Problems[i], w)
			}
			require.Equal(t, StatusEndpoints, res.Status)
			require.Equal(t, -1, res.FirstBad)
			require.Equal(t, tc.maxCalls, tc.fp.numCalls())
			evs, torn, err := ReadLogFile(dir)
			require.NoError(t, err)
			require.False(t, torn)
			require.Equal(t, EventDone, evs[len(evs)-1].Event)
			require.Equal(t, StatusEndpoints, evs[len(evs)-1].Status)
		})
	}
	t.Run("bad inside, good at the end", func(t *testing.T) {
		p := ProberFunc(func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
			if c.Name == "c04" {
				return Outcome{Verdict: Bad}, nil
			}
			return Outcome{Verdict: Good}, nil
		})
		_, err := Run(context.Background(), quickConfig(t, t.TempDir(), 10, 3, 0), p)
		require.ErrorContains(t, err, "last candidate c09 is good although c04 before it is bad: the predicate is not monotonic")
	})
	t.Run("single candidate", func(t *testing.T) {
		fp := &fakeProber{firstBad: 0}
		_, err := Run(context.Background(), quickConfig(t, t.TempDir(), 1, 1, 0), fp)
		require.ErrorContains(t, err, "need at least two candidates")
		require.Zero(t, fp.numCalls())
	})
}

func TestSkipsAreRoutedAround(t *testing.T) {
	// One untestable candidate anywhere that is not the first bad's left
	// neighbour still gives the exact answer, for one more probe at most.
	for n := 3; n <= 33; n += 5 {
		for f := 1; f < n; f++ {
			for s := 1; s < n-1; s++ {
				if s == f-1 || s == f {
					continue // ambiguous by nature, tested below
				}
				for k := 1; k <= 3; k++ {
					where := fmt.Sprintf("n=%d f=%d skip=%d k=%d", n, f, s, k)
					fp := &fakeProber{firstBad: f, skip: map[int]bool{s: true}}
					res, err := Run(context.Background(), memConfig(n, k, 0), fp)
					require.NoError(t, err, where)
					require.Equal(t, StatusFound, res.Status, where)
					require.Equal(t, f, res.FirstBad, where)
					require.LessOrEqual(t, res.Rounds, ceilLog(k+1, n)+3, where)
				}
			}
		}
	}
}

func TestSkipNextToFirstBadIsReportedAsRange(t *testing.T) {
	fp := &fakeProber{firstBad: 6, skip: map[int]bool{5: true}}
	dir := t.TempDir()
	res, err := Run(context.Background(), quickConfig(t, dir, 10, 1, 0), fp)
	require.NoError(t, err)
	require.Equal(t, StatusAmbiguous, res.Status)
	require.Equal(t, -1, res.FirstBad)
	require.Equal(t, 4, res.LastGood)
	require.Equal(t, 6, res.FirstKnownBad)
	require.Equal(t, []int{5, 6}, res.Suspects)
	require.Contains(t, res.Message, "first bad is one of c05, c06: c05 could not be tested")
	var fromJSON Result
	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &fromJSON))
	require.Equal(t, StatusAmbiguous, fromJSON.Status)
	require.Equal(t, []int{5, 6}, fromJSON.Suspects)
	require.Equal(t, -1, fromJSON.FirstBad)
	require.Equal(t, len(res.Probes), len(fromJSON.Probes))
	require.Contains(t, string(b), `"first_known_bad": 6`)
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), "first bad in here")
	require.Contains(t, string(html), `<title>#5 c05: skip</title>`)
	require.NotContains(t, string(html), ">first bad</text>")
}

func TestAllSkipRange(t *testing.T) {
	skip := map[int]bool{}
	for i := 1; i < 11; i++ {
		skip[i] = true
	}
	for k := 1; k <= 4; k++ {
		fp := &fakeProber{firstBad: 7, skip: skip}
		res, err := Run(context.Background(), quickConfig(t, t.TempDir(), 12, k, 0), fp)
		require.NoError(t, err)
		require.Equal(t, StatusAmbiguous, res.Status)
		require.Equal(t, 0, res.LastGood)
		require.Equal(t, 11, res.FirstKnownBad)
		require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, res.Suspects)
		// Every interior candidate had to be tried once: no candidate twice.
		require.Equal(t, 12, fp.numCalls(), "k=%d", k)
		seen := map[attemptKey]bool{}
		for _, c := range fp.calls {
			require.False(t, seen[c], "probed %v twice", c)
			seen[c] = true
		}
	}
}

func TestFlakyProbesAreMeasured(t *testing.T) {
	// The regression shows in 60% of boots of a bad image; good images never
	// show it. With 5 attempts per candidate the chance that a bad one
	// looks good every time is 1%, so over many seeds nearly all answers
	// must be exact, and the measured flake rate must be in the right area.
	exact, runs := 0, 0
	var rates []float64
	for seed := uint64(1); seed <= 40; seed++ {
		fp := &fakeProber{firstBad: 13, flakyBad: 0.6, seed: seed}
		res, err := Run(context.Background(), memConfig(32, 2, 4), fp)
		runs++
		if err != nil {
			// All attempts at the last candidate looked good.
			var ee *EndpointError
			require.ErrorAs(t, err, &ee, "seed %d", seed)
			continue
		}
		require.Equal(t, 5*len(uniqueIndexes(res.Probes)), len(res.Probes), "every tested candidate gets 1+retries attempts")
		if res.FirstBad == 13 {
			exact++
		}
		rates = append(rates, res.FlakeRate)
		if len(res.FlakyCandidates) > 0 {
			require.Greater(t, res.FlakeRate, 0.0)
			require.Contains(t, strings.Join(res.Warnings, "\n"), "flaky candidates")
		}
	}
	require.GreaterOrEqual(t, exact, runs-3, "exact answers %d of %d", exact, runs)
	mean := 0.0
	for _, r := range rates {
		mean += r
	}
	mean /= float64(len(rates))
	// Bad candidates disagree in min(p,1-p)=40% of attempts in expectation,
	// good ones never; about half the probed candidates are bad.
	require.Greater(t, mean, 0.05)
	require.Less(t, mean, 0.4)
	t.Logf("exact %d/%d, mean measured flake rate %.3f", exact, runs, mean)
}

func uniqueIndexes(ps []ProbeRecord) map[int]bool {
	m := map[int]bool{}
	for _, p := range ps {
		m[p.Index] = true
	}
	return m
}

func TestFlakyMajorityPolicy(t *testing.T) {
	// Bad in only 30% of attempts: "bad" policy still calls it bad,
	// "majority" calls the candidates good and ends at the endpoint check.
	fp := &fakeProber{firstBad: 4, flakyBad: 0.3, seed: 7}
	cfg := quickConfig(t, t.TempDir(), 8, 1, 8)
	res, err := Run(context.Background(), cfg, fp)
	require.NoError(t, err)
	require.Equal(t, 4, res.FirstBad)

	fp = &fakeProber{firstBad: 4, flakyBad: 0.3, seed: 7}
	cfg = quickConfig(t, t.TempDir(), 8, 1, 8)
	cfg.Flaky = FlakyMajority
	_, err = Run(context.Background(), cfg, fp)
	var ee *EndpointError
	require.ErrorAs(t, err, &ee)
	require.Contains(t, ee.Error(), "last candidate c07 is good")
}

func TestNonMonotonicPredicateWarns(t *testing.T) {
	// c03 is bad but c06 is good again (a fix landed, then a new break):
	// k=4 probes c00, c03, c06 and c09 in the first round.
	p := ProberFunc(func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
		switch c.Name {
		case "c03", "c04", "c09":
			return Outcome{Verdict: Bad}, nil
		}
		return Outcome{Verdict: Good}, nil
	})
	res, err := Run(context.Background(), quickConfig(t, t.TempDir(), 10, 4, 0), p)
	require.NoError(t, err)
	require.Equal(t, 3, res.FirstBad)
	require.Contains(t, strings.Join(res.Warnings, "\n"), "c06 is good although the earlier c03 is bad: the predicate is not monotonic")
}

func TestProberErrorIsSkipAndAbortStops(t *testing.T) {
	p := ProberFunc(func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
		switch c.Name {
		case "c00":
			return Outcome{Verdict: Good}, nil
		case "c01":
			return Outcome{}, errors.New("qemu: cannot open disk")
		}
		return Outcome{Verdict: Bad}, nil
	})
	res, err := Run(context.Background(), quickConfig(t, t.TempDir(), 4, 1, 0), p)
	require.NoError(t, err)
	require.Equal(t, StatusAmbiguous, res.Status)
	require.Equal(t, []int{1, 2}, res.Suspects)
	var found bool
	for _, pr := range res.Probes {
		if pr.Name == "c01" {
			found = true
			require.Equal(t, Skip, pr.Verdict)
			require.Contains(t, pr.Reason, "qemu: cannot open disk")
		}
	}
	require.True(t, found, "c01 was probed: %+v", res.Probes)

	abort := ProberFunc(func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
		if c.Name == "c00" {
			return Outcome{Verdict: Good}, nil
		}
		return Outcome{}, fmt.Errorf("predicate killed: %w", ErrAbort)
	})
	_, err = Run(context.Background(), quickConfig(t, t.TempDir(), 4, 1, 0), abort)
	require.ErrorIs(t, err, ErrAbort)
}

func TestRunRefusesExistingBisection(t *testing.T) {
	dir := t.TempDir()
	_, err := Run(context.Background(), quickConfig(t, dir, 4, 1, 0), &fakeProber{firstBad: 2})
	require.NoError(t, err)
	_, err = Run(context.Background(), quickConfig(t, dir, 4, 1, 0), &fakeProber{firstBad: 2})
	require.ErrorContains(t, err, "already holds a bisection")
}

func TestProbeDirectoriesAndEvidence(t *testing.T) {
	dir := t.TempDir()
	p := ProberFunc(func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
		if err := os.WriteFile(filepath.Join(runDir, "serial.log"), []byte(c.Name), 0o644); err != nil {
			return Outcome{}, err
		}
		v := Good
		if c.Name >= "c03" {
			v = Bad
		}
		return Outcome{Verdict: v, Reason: "checked " + c.Name}, nil
	})
	res, err := Run(context.Background(), quickConfig(t, dir, 8, 2, 0), p)
	require.NoError(t, err)
	require.Equal(t, 3, res.FirstBad)
	for _, pr := range res.Probes {
		b, err := os.ReadFile(filepath.Join(dir, pr.RunDir, "serial.log"))
		require.NoError(t, err)
		require.Equal(t, pr.Name, string(b))
		require.Equal(t, "checked "+pr.Name, pr.Reason)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), "<svg")
	require.Contains(t, string(html), "first bad")
	require.NotContains(t, string(html), "http://")
	require.NotContains(t, string(html), "https://")
	require.NotContains(t, string(html), "<script")
	for _, c := range res.Candidates {
		require.Contains(t, string(html), ">"+c.Name+"</text>")
	}
	require.Contains(t, string(html), `class="bad"`)
}

func TestUnusableDirectoryAndBadProberVerdicts(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err := Run(context.Background(), quickConfig(t, filepath.Join(file, "bisect"), 4, 1, 0), &fakeProber{firstBad: 2})
	require.ErrorContains(t, err, "creating bisect directory")

	_, err = Run(context.Background(), Config{Candidates: candidates(3)}, &fakeProber{firstBad: 1})
	require.ErrorContains(t, err, "Config.Dir is empty")
	cfg := quickConfig(t, t.TempDir(), 3, 1, 0)
	cfg.Candidates[2].Name = "c00"
	_, err = Run(context.Background(), cfg, &fakeProber{firstBad: 1})
	require.ErrorContains(t, err, `candidate name "c00" is used twice`)

	// A prober answering outside good/bad/skip is a bug on its side; the
	// candidate is treated as untestable and the reason says why.
	p := ProberFunc(func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
		switch c.Name {
		case "c00":
			return Outcome{Verdict: Good}, nil
		case "c01":
			return Outcome{Verdict: "maybe"}, nil
		}
		return Outcome{Verdict: Bad}, nil
	})
	res, err := Run(context.Background(), quickConfig(t, t.TempDir(), 3, 1, 0), p)
	require.NoError(t, err)
	require.Equal(t, Skip, res.Verdicts[1])
	require.Equal(t, StatusAmbiguous, res.Status)
	require.Contains(t, res.Probes[len(res.Probes)-1].Reason, `prober returned verdict "maybe"`)
}
