package bisect

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func finishedAttempts(t *testing.T, dir string) map[attemptKey]Verdict {
	evs, _, err := ReadLogFile(dir)
	require.NoError(t, err)
	m := map[attemptKey]Verdict{}
	for _, ev := range evs {
		if ev.Event == EventProbeResult {
			k := attemptKey{*ev.Index, ev.Attempt}
			_, dup := m[k]
			require.False(t, dup, "probe %v has two results in the log", k)
			m[k] = ev.Verdict
		}
	}
	return m
}

// Interrupt a bisection after every possible number of finished probes,
// resume it, and check that no finished probe runs again, that the answer
// and the path are the same as without the interruption, and that the log
// reads as one bisection (one start, one done, one decision per round).
func TestResumeAfterInterruptionAtEveryPoint(t *testing.T) {
	const n, first, k, retries = 40, 23, 2, 1
	ref, err := Run(context.Background(), quickConfig(t, t.TempDir(), n, k, retries), &fakeProber{firstBad: first})
	require.NoError(t, err)
	total := len(ref.Probes)
	for cut := 1; cut < total; cut++ {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		fp := &fakeProber{firstBad: first, cancelAfter: cut, cancel: cancel}
		_, err := Run(ctx, quickConfig(t, dir, n, k, retries), fp)
		cancel()
		require.ErrorIs(t, err, context.Canceled, "cut %d", cut)
		done := finishedAttempts(t, dir)
		require.Less(t, len(done), total)

		if cut%3 == 0 {
			// A crash in the middle of writing a line.
			f, err := os.OpenFile(filepath.Join(dir, LogName), os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteString(`{"seq":999,"event":"probe-res`)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}

		fp2 := &fakeProber{firstBad: first}
		res, err := Resume(context.Background(), dir, fp2, nil)
		require.NoError(t, err, "cut %d", cut)
		for _, c := range fp2.calls {
			_, again := done[c]
			require.False(t, again, "cut %d: finished probe %v ran again", cut, c)
		}
		require.Equal(t, len(done)+len(fp2.calls), total, "cut %d: probes before + after resume", cut)
		require.Equal(t, ref.FirstBad, res.FirstBad)
		require.Equal(t, ref.Rounds, res.Rounds)
		require.Equal(t, ref.Verdicts, res.Verdicts)
		resumed := 0
		for _, p := range res.Probes {
			if p.Resumed {
				resumed++
			}
		}
		require.Equal(t, len(done), resumed)

		evs, torn, err := ReadLogFile(dir)
		require.NoError(t, err)
		require.False(t, torn, "resume must cut the torn tail before appending")
		counts := map[string]int{}
		rounds := map[int]int{}
		for _, ev := range evs {
			counts[ev.Event]++
			if ev.Event == EventDecision {
				rounds[ev.Round]++
				require.Equal(t, 1, rounds[ev.Round], "cut %d: round %d decided twice", cut, ev.Round)
			}
			require.Greater(t, ev.Seq, 0)
		}
		require.Equal(t, 1, counts[EventStart])
		require.Equal(t, 1, counts[EventDone])
		require.Equal(t, total, counts[EventProbeResult])
		for i := 1; i < len(evs); i++ {
			require.Greater(t, evs[i].Seq, evs[i-1].Seq, "seq must keep increasing across the resume")
		}
	}
}

func TestResumeFinishedBisectionProbesNothing(t *testing.T) {
	dir := t.TempDir()
	ref, err := Run(context.Background(), quickConfig(t, dir, 16, 1, 0), &fakeProber{firstBad: 5})
	require.NoError(t, err)
	before, err := os.ReadFile(filepath.Join(dir, LogName))
	require.NoError(t, err)
	fp := &fakeProber{firstBad: 5}
	res, err := Resume(context.Background(), dir, fp, nil)
	require.NoError(t, err)
	require.Zero(t, fp.numCalls())
	require.Equal(t, ref.FirstBad, res.FirstBad)
	after, err := os.ReadFile(filepath.Join(dir, LogName))
	require.NoError(t, err)
	require.Equal(t, string(before), string(after), "resuming a finished bisection must not append")
}

func TestInterruptedProbeDirectoryIsKept(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	p := ProberFunc(func(pctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
		if c.Name == "c09" {
			require.NoError(t, os.WriteFile(filepath.Join(runDir, "serial.log"), []byte("half a boot"), 0o644))
			cancel()
			return Outcome{}, pctx.Err()
		}
		return Outcome{Verdict: Good}, nil
	})
	_, err := Run(ctx, quickConfig(t, dir, 10, 1, 0), p)
	require.ErrorIs(t, err, context.Canceled)
	res, err := Resume(context.Background(), dir, &fakeProber{firstBad: 4}, nil)
	require.NoError(t, err)
	require.Equal(t, 4, res.FirstBad)
	old, err := filepath.Glob(filepath.Join(dir, "probes", "009-c09-a0.interrupted-*", "serial.log"))
	require.NoError(t, err)
	require.Len(t, old, 1, "the interrupted attempt's evidence is kept")
}

func TestReadLogRejectsDamageInTheMiddle(t *testing.T) {
	dir := t.TempDir()
	_, err := Run(context.Background(), quickConfig(t, dir, 8, 1, 0), &fakeProber{firstBad: 3})
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, LogName))
	require.NoError(t, err)
	lines := strings.SplitAfter(string(data), "\n")

	evs, torn, err := ReadLog(strings.NewReader(string(data) + `{"seq":`))
	require.NoError(t, err)
	require.True(t, torn)
	require.Len(t, evs, len(lines)-1)

	broken := strings.Join(lines[:2], "") + "{garbage\n" + strings.Join(lines[2:], "")
	_, _, err = ReadLog(strings.NewReader(broken))
	require.ErrorContains(t, err, "line 3")

	_, _, err = ReadLog(strings.NewReader(string(data) + "{\"event\":\"explode\"}\n"))
	require.ErrorContains(t, err, `unknown event "explode"`)

	_, _, err = ReadLog(strings.NewReader(strings.Replace(lines[0], `"version":1`, `"version":7`, 1)))
	require.ErrorContains(t, err, "log version 7")

	_, _, err = ReadLog(strings.NewReader(lines[1]))
	require.ErrorContains(t, err, "first event")
}

func TestReplayPrintsTheDecisionTrail(t *testing.T) {
	dir := t.TempDir()
	cfg := quickConfig(t, dir, 16, 1, 0)
	cfg.Predicate = &Predicate{Kind: PredicateCommand, Command: "test -e /sys/x"}
	res, err := Run(context.Background(), cfg, &fakeProber{firstBad: 11})
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, Replay(&b, dir))
	out := b.String()
	require.Contains(t, out, "start: 16 candidates (c00 c01")
	require.Contains(t, out, `predicate command "test -e /sys/x"`)
	require.Contains(t, out, "round 1: c00 is good")
	require.Contains(t, out, "round 2: c15 is bad")
	require.Contains(t, out, "decision after round 2: first bad is in c01..c15 (after good c00); 14 untested between; next c07")
	require.Contains(t, out, "done (found) after")
	require.Contains(t, out, "first bad: c11; last good: c10")
	require.Equal(t, len(res.Probes), strings.Count(out, ": probing "))
	require.NotContains(t, out, "not finished")
}

func TestReplayOfUnfinishedSaysHowToContinue(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, quickConfig(t, dir, 16, 1, 0), &fakeProber{firstBad: 11, cancelAfter: 3, cancel: cancel})
	require.True(t, errors.Is(err, context.Canceled))
	var b bytes.Buffer
	require.NoError(t, Replay(&b, dir))
	require.Contains(t, b.String(), "not finished: continue with `bootlab bisect --resume "+dir+"`")
}

func FuzzReadLog(f *testing.F) {
	dir := f.TempDir()
	cfg := Config{Candidates: candidates(6), Dir: dir, Parallel: 2, Retries: 1, noSync: true,
		Predicate: &Predicate{Kind: PredicateScenario, Scenario: "boot"}}
	if _, err := Run(context.Background(), cfg, &fakeProber{firstBad: 2, skip: map[int]bool{3: true}}); err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, LogName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:len(data)-7])
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"event":"start","version":1,"candidates":[{"name":"a","iso":"x"}]}` + "\n" + `{"event":"probe-result","index":-1}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		evs, _, err := ReadLog(bytes.NewReader(in))
		if err != nil {
			return
		}
		// Whatever was accepted must survive a write and a read unchanged:
		// resume appends to logs this reader accepted.
		var buf bytes.Buffer
		if err := writeLines(&buf, evs); err != nil {
			t.Fatalf("re-encoding accepted events: %v", err)
		}
		again, torn, err := ReadLog(&buf)
		if err != nil || torn {
			t.Fatalf("re-reading accepted events: torn=%v err=%v\n%s", torn, err, buf.String())
		}
		// Compare as encoded: an empty and a nil slice mean the same here.
		var b1, b2 bytes.Buffer
		require.NoError(t, writeLines(&b1, evs))
		require.NoError(t, writeLines(&b2, again))
		require.Equal(t, b1.String(), b2.String())
		require.Equal(t, len(evs), len(again))
	})
}
