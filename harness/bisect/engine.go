// Package bisect half-splits an ordered list of boot images (ISOs or
// kernel+initrd triples) to find the first one where a predicate turns bad,
// the way `git bisect run` does for commits. It owns the search, the
// resumable event log, the reports and the predicate formats; booting a VM
// and judging it is the Prober's job, so the engine is tested with fakes and
// the harness plugs the real VM in. docs/bisect.md is the user manual.
package bisect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// Verdict is what one probe says about one candidate.
type Verdict string

const (
	// Good: the behaviour under test is as before the regression.
	Good Verdict = "good"
	// Bad: the behaviour under test shows the regression.
	Bad Verdict = "bad"
	// Skip: the candidate could not be tested (image missing, QEMU or
	// boot infrastructure failed, login never reached) - this says nothing
	// about the behaviour under test, so the search routes around it.
	Skip Verdict = "skip"
)

func (v Verdict) valid() bool { return v == Good || v == Bad || v == Skip }

// Outcome is a probe's verdict plus the evidence a person needs to check it
// without booting again.
type Outcome struct {
	Verdict Verdict
	// Reason is one line: why bad, or why the image could not be tested.
	Reason string
	// RunDir is where the probe's logs went; empty means the runDir the
	// engine handed to Probe.
	RunDir string
	// Duration, if zero, is the wall time the engine measured around Probe.
	Duration time.Duration
	// Steps are the predicate's steps as they ran (script predicates), and
	// FailedStep the one that decided a bad or skip verdict; the probe's run
	// record keeps them (VerdictRecorder).
	Steps      []runrec.PredicateStep
	FailedStep string
}

// ErrAbort, wrapped in a Prober's error, stops the whole bisection (for
// example a predicate command killed by a signal, or the host out of disk).
// The log stays resumable. Any other Prober error makes that probe a Skip
// with the error as reason, because a failure to boot one image must not
// cost the whole search.
var ErrAbort = errors.New("bisection aborted")

// Prober boots one candidate and judges it with the predicate.
//
// Contract: Probe is called concurrently (Config.Parallel goroutines), each
// call with its own empty runDir that it should fill with evidence; attempt
// counts 0.. for re-probes of the same candidate (Config.Retries). It
// returns promptly when ctx is done; results returned after ctx is done are
// not recorded, so a resumed bisection probes that candidate again.
type Prober interface {
	Probe(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error)
}

// ProbeInfo tells a Prober where in the bisection a call is, for its logs
// and for the BOOTLAB_CANDIDATE_INDEX a host predicate sees.
type ProbeInfo struct{ Index, Round, Attempt int }

type probeInfoKey struct{}

// ProbeInfoFrom returns the ProbeInfo the engine put in a Probe's ctx.
func ProbeInfoFrom(ctx context.Context) (ProbeInfo, bool) {
	pi, ok := ctx.Value(probeInfoKey{}).(ProbeInfo)
	return pi, ok
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error)

// Probe calls f.
func (f ProberFunc) Probe(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
	return f(ctx, c, attempt, runDir)
}

// FlakyPolicy decides the verdict of a candidate whose attempts disagree.
type FlakyPolicy string

const (
	// FlakyBad: any bad attempt makes the candidate bad. Right for an
	// intermittent regression: good images never show it, bad ones only
	// sometimes (syzkaller treats a crash in any run the same way).
	FlakyBad FlakyPolicy = "bad"
	// FlakyMajority: the more frequent of good/bad wins, a tie is bad. For
	// a predicate that is noisy in both directions.
	FlakyMajority FlakyPolicy = "majority"
)

// Status is how a bisection ended.
type Status string

const (
	// StatusFound: FirstBad is exact.
	StatusFound Status = "found"
	// StatusAmbiguous: candidates that could not be tested sit between
	// the last good and the first known bad; Suspects lists every candidate
	// that may be the first bad.
	StatusAmbiguous Status = "ambiguous"
	// StatusEndpoints: the first candidate is not good or the last is not
	// bad, so there is nothing to bisect (Run also returns *EndpointError).
	StatusEndpoints Status = "endpoints-invalid"
)

// EndpointError says why the list cannot be bisected.
type EndpointError struct{ Problems []string }

func (e *EndpointError) Error() string {
	return "endpoints do not hold: " + strings.Join(e.Problems, "; ")
}

// Config describes a new bisection.
type Config struct {
	Candidates []Candidate
	// Dir is the bisect directory: bisect.jsonl, probes/, report.html.
	Dir string
	// Parallel is k, the probes per round on k VMs (k-ary search); <1 is 1.
	Parallel int
	// Retries re-probes every tested candidate Retries more times to
	// measure flakiness; 0 probes each once.
	Retries int
	// Flaky decides mixed results; empty is FlakyBad.
	Flaky FlakyPolicy
	// ProbeTimeout bounds one attempt (boot + predicate); an attempt that
	// overruns is a Skip ("could not be tested"), because a hung VM or
	// harness must not stall the search. 0 means no bound. A hang that
	// is the regression itself belongs in the predicate (expect timeouts,
	// boot milestones), which judges it bad.
	ProbeTimeout time.Duration
	// FetchDir is where url= candidates are downloaded when first probed
	// (Fetch); empty is the Prober's DownloadDir (the image cache's isos/).
	FetchDir string
	// Predicate is recorded in the log so a resume judges the same way.
	Predicate *Predicate
	Logger    *slog.Logger
	// Now is the clock for log timestamps and durations; nil is time.Now.
	Now func() time.Time

	// noSync skips fsync per event, and memOnly skips every file (log,
	// probe directories, report): the exhaustive search tests run tens of
	// thousands of bisections, and mkdir alone made them take a minute.
	noSync, memOnly bool
}

// ProbeRecord is one attempt on one candidate.
type ProbeRecord struct {
	Round    int           `json:"round"`
	Index    int           `json:"index"`
	Name     string        `json:"name"`
	Attempt  int           `json:"attempt"`
	Verdict  Verdict       `json:"verdict"`
	Reason   string        `json:"reason,omitempty"`
	RunDir   string        `json:"run_dir"`
	Duration time.Duration `json:"duration_ns"`
	// Resumed is true when the result came from the log of an earlier,
	// interrupted invocation instead of a new boot.
	Resumed bool `json:"resumed,omitempty"`
}

// Result is the outcome of a bisection.
type Result struct {
	Status     Status      `json:"status"`
	Dir        string      `json:"dir"`
	Candidates []Candidate `json:"candidates"`
	// Verdicts per candidate index after aggregation of attempts; "" =
	// never probed.
	Verdicts []Verdict `json:"verdicts"`
	// FirstBad is the exact first bad index, -1 unless StatusFound.
	FirstBad int `json:"first_bad"`
	// LastGood is the highest good index below FirstKnownBad, -1 if none.
	LastGood int `json:"last_good"`
	// FirstKnownBad is the lowest bad index, -1 if none.
	FirstKnownBad int `json:"first_known_bad"`
	// Suspects are the indexes that may be the first bad: just FirstBad
	// when found, LastGood+1..FirstKnownBad when ambiguous.
	Suspects []int         `json:"suspects"`
	Probes   []ProbeRecord `json:"probes"`
	Rounds   int           `json:"rounds"`
	// FlakeRate is the share of good/bad attempts that disagreed with
	// their candidate's verdict (0 without retries: nothing measured).
	FlakeRate float64 `json:"flake_rate"`
	// FlakyCandidates had both good and bad attempts.
	FlakyCandidates []int    `json:"flaky_candidates"`
	Warnings        []string `json:"warnings"`
	// Message is the one-paragraph human answer.
	Message string `json:"message"`
	// RunDiff compares the last good and first bad candidates' runs.
	RunDiff *RunDiff `json:"run_diff,omitempty"`
}

// ResultFile is the Result as JSON in the bisect directory (`bootlab bisect --json`
// prints it).
const ResultFile = "result.json"

type attemptKey struct{ index, attempt int }

type engine struct {
	cfg    Config
	log    *logWriter
	logger *slog.Logger
	now    func() time.Time

	// known holds probe results from the log of an earlier invocation.
	known map[attemptKey]Event
	// decided holds rounds whose decision event is already in the log.
	decided map[int]bool
	hadDone bool

	mu       sync.Mutex
	attempts map[int][]ProbeRecord
	res      Result
}

// Run starts a new bisection in cfg.Dir, which must not hold one already.
func Run(ctx context.Context, cfg Config, p Prober) (*Result, error) {
	if err := cfg.normalise(); err != nil {
		return nil, err
	}
	e := newEngine(cfg)
	if cfg.memOnly {
		return e.run(ctx, p)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating bisect directory: %w", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, LogName)); err == nil {
		return nil, fmt.Errorf("%s already holds a bisection; resume it with --resume %s or pick a new --dir", cfg.Dir, cfg.Dir)
	}
	w, err := openLog(cfg.Dir, 0, e.now, !cfg.noSync)
	if err != nil {
		return nil, err
	}
	e.log = w
	defer w.Close()
	if err := w.append(Event{Event: EventStart, Version: logVersion, Candidates: cfg.Candidates,
		Parallel: cfg.Parallel, Retries: cfg.Retries, Flaky: cfg.Flaky, Predicate: cfg.Predicate,
		ProbeTimeoutMS: cfg.ProbeTimeout.Milliseconds()}); err != nil {
		return nil, err
	}
	return e.run(ctx, p)
}

// LoadConfig reads the configuration a bisection was started with, for a
// caller that must prepare its Prober (the predicate) before Resume.
func LoadConfig(dir string) (Config, error) {
	evs, _, err := ReadLogFile(dir)
	if err != nil {
		return Config{}, err
	}
	if len(evs) == 0 {
		return Config{}, fmt.Errorf("%s: %w", dir, errNoStart)
	}
	st := evs[0]
	return Config{Candidates: st.Candidates, Dir: dir, Parallel: st.Parallel, Retries: st.Retries,
		Flaky: st.Flaky, Predicate: st.Predicate, ProbeTimeout: time.Duration(st.ProbeTimeoutMS) * time.Millisecond}, nil
}

// Resume continues the bisection in dir after an interruption. Probes whose
// result is in the log are not run again; probes that had started but not
// finished are run again (their old run directory is kept, renamed). Resuming
// a finished bisection only rebuilds its result and report.
func Resume(ctx context.Context, dir string, p Prober, logger *slog.Logger) (*Result, error) {
	evs, torn, err := ReadLogFile(dir)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("%s: %w", dir, errNoStart)
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	cfg.Logger = logger
	if err := cfg.normalise(); err != nil {
		return nil, fmt.Errorf("bisect log start event: %w", err)
	}
	e := newEngine(cfg)
	if torn {
		e.logger.Warn("bisect log ended in a torn line, dropped it", "dir", dir)
	}
	maxSeq := 0
	for _, ev := range evs {
		maxSeq = max(maxSeq, ev.Seq)
		switch ev.Event {
		case EventProbeResult:
			e.known[attemptKey{*ev.Index, ev.Attempt}] = ev
		case EventDecision:
			e.decided[ev.Round] = true
		case EventDone:
			e.hadDone = true
		}
	}
	w, err := openLog(dir, maxSeq, e.now, !cfg.noSync)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	e.log = w
	return e.run(ctx, p)
}

func (c *Config) normalise() error {
	if c.Dir == "" {
		return errors.New("bisect: Config.Dir is empty")
	}
	if c.Parallel < 1 {
		c.Parallel = 1
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	switch c.Flaky {
	case "":
		c.Flaky = FlakyBad
	case FlakyBad, FlakyMajority:
	default:
		return fmt.Errorf("bisect: unknown flaky policy %q (want %q or %q)", c.Flaky, FlakyBad, FlakyMajority)
	}
	seen := map[string]bool{}
	for _, cand := range c.Candidates {
		if err := cand.validate(); err != nil {
			return err
		}
		if seen[cand.Name] {
			return fmt.Errorf("bisect: candidate name %q is used twice", cand.Name)
		}
		seen[cand.Name] = true
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func newEngine(cfg Config) *engine {
	n := len(cfg.Candidates)
	return &engine{
		cfg: cfg, logger: cfg.Logger, now: cfg.Now,
		known: map[attemptKey]Event{}, decided: map[int]bool{},
		attempts: map[int][]ProbeRecord{},
		res: Result{Dir: cfg.Dir, Candidates: cfg.Candidates, Verdicts: make([]Verdict, n),
			FirstBad: -1, LastGood: -1, FirstKnownBad: -1},
	}
}

func (e *engine) run(ctx context.Context, p Prober) (*Result, error) {
	n := len(e.cfg.Candidates)
	if n < 2 {
		return e.endpointFailure([]string{fmt.Sprintf("need at least two candidates (a good one and a bad one), got %d", n)})
	}
	round := 0
	// Endpoints first: a search over a range whose ends do not hold
	// would confidently name a wrong candidate.
	// With k > 2 the spare workers of the first round already split the
	// inside: that costs boots only when the endpoints turn out wrong, and
	// saves a round of wall time otherwise.
	ends := [][]int{{0, n - 1}}
	if e.cfg.Parallel == 1 {
		ends = [][]int{{0}, {n - 1}}
	} else if e.cfg.Parallel > 2 && n > 2 {
		inside := make([]int, 0, n-2)
		for i := 1; i < n-1; i++ {
			inside = append(inside, i)
		}
		ends[0] = append(ends[0], splitPoints(inside, e.cfg.Parallel-2)...)
	}
	for _, pts := range ends {
		round++
		if err := e.probeRound(ctx, p, round, pts); err != nil {
			return nil, err
		}
		if probs := e.endpointProblems(pts); len(probs) > 0 {
			e.decide(round, strings.Join(probs, "; ")+": stopping")
			return e.endpointFailure(probs)
		}
	}
	for {
		lo, hi := e.bounds()
		var untested []int
		for i := lo + 1; i < hi; i++ {
			if e.res.Verdicts[i] == "" {
				untested = append(untested, i)
			}
		}
		if len(untested) == 0 {
			e.res.Rounds = round
			return e.finish(lo, hi)
		}
		pts := splitPoints(untested, e.cfg.Parallel)
		e.decide(round, fmt.Sprintf("first bad is in %s; %d untested between; next %s",
			e.rangeText(lo, hi), len(untested), e.namesText(pts)))
		round++
		if err := e.probeRound(ctx, p, round, pts); err != nil {
			return nil, err
		}
	}
}

// splitPoints picks k of the untested candidates that cut the possible
// first-bad positions into k+1 near-equal parts, which bounds the rounds by
// ceil(log_(k+1) N). Computing the cut on the untested list rather than on
// indexes is what routes around skips: a skipped candidate simply leaves the
// list and its neighbour takes its place.
func splitPoints(untested []int, k int) []int {
	if len(untested) <= k {
		return append([]int(nil), untested...)
	}
	m := len(untested) + 1
	pts := make([]int, 0, k)
	for i := 1; i <= k; i++ {
		pts = append(pts, untested[i*m/(k+1)-1])
	}
	return pts
}

// bounds returns the first known bad and the last good below it. A good
// above a bad means the predicate is not monotonic; the search follows the
// earliest bad and says so in Warnings.
func (e *engine) bounds() (lo, hi int) {
	hi = -1
	for i, v := range e.res.Verdicts {
		if v == Bad {
			hi = i
			break
		}
	}
	lo = -1
	for i := hi - 1; i >= 0; i-- {
		if e.res.Verdicts[i] == Good {
			lo = i
			break
		}
	}
	return lo, hi
}

func (e *engine) endpointProblems(pts []int) []string {
	n := len(e.cfg.Candidates)
	var probs []string
	for _, i := range pts {
		if i != 0 && i != n-1 {
			continue
		}
		name := e.cfg.Candidates[i].Name
		v := e.res.Verdicts[i]
		reason := e.lastReason(i)
		switch {
		case v == Skip:
			probs = append(probs, fmt.Sprintf("endpoint %s could not be tested (skip: %s)", name, reason))
		case i == 0 && v == Bad:
			probs = append(probs, fmt.Sprintf("first candidate %s is bad, so the regression is older than the list (or the predicate fails everywhere: %s)", name, reason))
		case i == n-1 && v == Good:
			msg := fmt.Sprintf("last candidate %s is good, so nothing in the list regressed", name)
			for _, j := range pts {
				if e.res.Verdicts[j] == Bad && j != 0 {
					msg = fmt.Sprintf("last candidate %s is good although %s before it is bad: the predicate is not monotonic (flaky, or fixed again); bisect a shorter list that ends at a bad candidate",
						name, e.cfg.Candidates[j].Name)
					break
				}
			}
			probs = append(probs, msg)
		}
	}
	return probs
}

func (e *engine) lastReason(i int) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	as := e.attempts[i]
	if len(as) == 0 {
		return ""
	}
	return as[len(as)-1].Reason
}

func (e *engine) endpointFailure(probs []string) (*Result, error) {
	e.res.Status = StatusEndpoints
	e.res.Message = "cannot bisect: " + strings.Join(probs, "; ")
	e.collect()
	if err := e.done(); err != nil {
		return &e.res, err
	}
	return &e.res, &EndpointError{Problems: probs}
}

func (e *engine) finish(lo, hi int) (*Result, error) {
	r := &e.res
	r.LastGood, r.FirstKnownBad = lo, hi
	for i := lo + 1; i <= hi; i++ {
		r.Suspects = append(r.Suspects, i)
	}
	for i := hi + 1; i < len(r.Verdicts); i++ {
		if r.Verdicts[i] == Good {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s is good although the earlier %s is bad: the predicate is not monotonic (flaky, or the regression was fixed later); the answer follows the earliest bad",
				e.cfg.Candidates[i].Name, e.cfg.Candidates[hi].Name))
		}
	}
	if len(r.Suspects) == 1 {
		r.Status = StatusFound
		r.FirstBad = hi
		r.Message = fmt.Sprintf("first bad: %s; last good: %s", e.cfg.Candidates[hi].Name, e.cfg.Candidates[lo].Name)
	} else {
		r.Status = StatusAmbiguous
		r.Message = fmt.Sprintf("first bad is one of %s: %s could not be tested; last good: %s, first known bad: %s",
			e.namesText(r.Suspects), e.namesText(r.Suspects[:len(r.Suspects)-1]),
			e.cfg.Candidates[lo].Name, e.cfg.Candidates[hi].Name)
	}
	e.collect()
	if len(r.FlakyCandidates) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("flaky candidates %s (flake rate %.1f%% of attempts, policy %q)",
			e.namesText(r.FlakyCandidates), 100*r.FlakeRate, e.cfg.Flaky))
	}
	return r, e.done()
}

func (e *engine) collect() {
	r := &e.res
	var minority, total int
	r.Probes = r.Probes[:0]
	idx := make([]int, 0, len(e.attempts))
	for i := range e.attempts {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		g, b := 0, 0
		for _, a := range e.attempts[i] {
			r.Probes = append(r.Probes, a)
			switch a.Verdict {
			case Good:
				g++
			case Bad:
				b++
			}
		}
		minority += min(g, b)
		total += g + b
		if g > 0 && b > 0 {
			r.FlakyCandidates = append(r.FlakyCandidates, i)
		}
	}
	sort.SliceStable(r.Probes, func(a, b int) bool {
		pa, pb := r.Probes[a], r.Probes[b]
		if pa.Round != pb.Round {
			return pa.Round < pb.Round
		}
		if pa.Index != pb.Index {
			return pa.Index < pb.Index
		}
		return pa.Attempt < pb.Attempt
	})
	if total > 0 && e.cfg.Retries > 0 {
		r.FlakeRate = float64(minority) / float64(total)
	}
}

func (e *engine) done() error {
	r := &e.res
	if !e.hadDone {
		ev := Event{Event: EventDone, Status: r.Status, Message: r.Message, Suspects: r.Suspects,
			Probes: len(r.Probes), Rounds: r.Rounds, Flake: r.FlakeRate}
		if r.FirstBad >= 0 {
			ev.FirstBad = intp(r.FirstBad)
		}
		if r.LastGood >= 0 {
			ev.LastGood = intp(r.LastGood)
		}
		if err := e.log.append(ev); err != nil {
			return err
		}
	}
	e.logger.Info("bisect done", "status", r.Status, "message", r.Message, "probes", len(r.Probes), "rounds", r.Rounds)
	if e.cfg.memOnly {
		return nil
	}
	r.diffBoundary()
	if err := WriteHTMLReport(filepath.Join(e.cfg.Dir, "report.html"), r); err != nil {
		return err
	}
	// result.json is for CI and scripts: the answer without parsing text.
	return atomicfile.WriteJSON(filepath.Join(e.cfg.Dir, ResultFile), r)
}

func (e *engine) decide(round int, msg string) {
	e.logger.Info("bisect decision", "round", round, "decision", msg)
	if e.decided[round] {
		return
	}
	e.decided[round] = true
	lo, hi := e.bounds()
	ev := Event{Event: EventDecision, Round: round, Message: msg}
	if lo >= 0 {
		ev.LastGood = intp(lo)
	}
	if hi >= 0 {
		ev.FirstBad = intp(hi)
	}
	if err := e.log.append(ev); err != nil {
		e.logger.Error("bisect log write failed", "err", err)
	}
}

func (e *engine) rangeText(lo, hi int) string {
	cs := e.cfg.Candidates
	if hi-lo == 1 {
		return cs[hi].Name
	}
	return fmt.Sprintf("%s..%s (after good %s)", cs[lo+1].Name, cs[hi].Name, cs[lo].Name)
}

func (e *engine) namesText(idx []int) string {
	names := make([]string, len(idx))
	for i, x := range idx {
		names[i] = e.cfg.Candidates[x].Name
	}
	return strings.Join(names, ", ")
}

// probeRound runs one round: every point on its own goroutine, each doing
// its attempts in order, and only then updates the verdicts, so the next
// round's choice does not depend on which VM finished first (that keeps a
// resumed run on the same path as the interrupted one).
func (e *engine) probeRound(ctx context.Context, p Prober, round int, pts []int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	verdicts := make([]Verdict, len(pts))
	errs := make([]error, len(pts))
	var wg sync.WaitGroup
	for j, idx := range pts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := e.probePoint(ctx, p, round, idx)
			if err != nil {
				cancel()
			}
			verdicts[j], errs[j] = v, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for j, idx := range pts {
		e.res.Verdicts[idx] = verdicts[j]
	}
	e.res.Rounds = round
	return nil
}

func (e *engine) probePoint(ctx context.Context, p Prober, round, idx int) (Verdict, error) {
	g, b := 0, 0
	for attempt := 0; attempt <= e.cfg.Retries; attempt++ {
		rec, err := e.attempt(ctx, p, round, idx, attempt)
		if err != nil {
			return "", err
		}
		e.mu.Lock()
		e.attempts[idx] = append(e.attempts[idx], rec)
		e.mu.Unlock()
		switch rec.Verdict {
		case Good:
			g++
		case Bad:
			b++
		}
	}
	switch {
	case g == 0 && b == 0:
		return Skip, nil
	case b == 0:
		return Good, nil
	case g == 0:
		return Bad, nil
	case e.cfg.Flaky == FlakyMajority && g > b:
		return Good, nil
	default:
		return Bad, nil
	}
}

// prepareRunDir makes DIR/probes/NNN-name-aA; a directory left by an
// interrupted attempt is kept under another name as evidence.
func (e *engine) prepareRunDir(idx, attempt int) (rel, abs string, err error) {
	c := e.cfg.Candidates[idx]
	rel = filepath.Join("probes", fmt.Sprintf("%03d-%s-a%d", idx, unsafeName.ReplaceAllString(c.Name, "_"), attempt))
	abs = filepath.Join(e.cfg.Dir, rel)
	if _, err := os.Stat(abs); err == nil {
		old := fmt.Sprintf("%s.interrupted-%d", abs, e.now().UnixNano())
		if err := os.Rename(abs, old); err != nil {
			return "", "", fmt.Errorf("moving aside interrupted probe directory: %w", err)
		}
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", "", fmt.Errorf("creating probe directory for %s: %w", c.Name, err)
	}
	return rel, abs, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._+-]+`)

func (e *engine) attempt(ctx context.Context, p Prober, round, idx, attempt int) (ProbeRecord, error) {
	c := e.cfg.Candidates[idx]
	if ev, ok := e.known[attemptKey{idx, attempt}]; ok {
		return ProbeRecord{Round: round, Index: idx, Name: c.Name, Attempt: attempt, Verdict: ev.Verdict,
			Reason: ev.Reason, RunDir: ev.RunDir, Duration: time.Duration(ev.DurationMS) * time.Millisecond, Resumed: true}, nil
	}
	if err := ctx.Err(); err != nil {
		return ProbeRecord{}, fmt.Errorf("bisection interrupted before probing %s: %w", c.Name, err)
	}
	var rel, runDir string
	if !e.cfg.memOnly {
		var err error
		if rel, runDir, err = e.prepareRunDir(idx, attempt); err != nil {
			return ProbeRecord{}, err
		}
	}
	if err := e.log.append(Event{Event: EventProbeStart, Round: round, Index: intp(idx), Name: c.Name,
		Attempt: attempt, RunDir: rel}); err != nil {
		return ProbeRecord{}, err
	}
	e.logger.Info("probe start", "candidate", c.Name, "index", idx, "attempt", attempt, "round", round, "run_dir", runDir)
	start := e.now()
	pctx, cancel := ctx, context.CancelFunc(func() {})
	if e.cfg.ProbeTimeout > 0 {
		pctx, cancel = context.WithTimeout(ctx, e.cfg.ProbeTimeout)
	}
	pctx = context.WithValue(pctx, probeInfoKey{}, ProbeInfo{Index: idx, Round: round, Attempt: attempt})
	// A url= candidate is downloaded now, when it is first probed, not before the
	// bisection: a search that settles in a few probes fetches only those ISOs.
	fetchDir := e.cfg.FetchDir
	if fd, ok := p.(Downloader); ok && fetchDir == "" {
		fetchDir = fd.DownloadDir()
	}
	fetched, err := Fetch(pctx, c, fetchDir)
	var out Outcome
	if err == nil {
		if fetched.ISO != c.ISO {
			e.logger.Info("downloaded", "candidate", c.Name, "url", c.URL, "iso", fetched.ISO)
		}
		out, err = p.Probe(pctx, fetched, attempt, runDir)
	}
	timedOut := pctx.Err() != nil
	cancel()
	elapsed := e.now().Sub(start)
	if ctx.Err() != nil {
		return ProbeRecord{}, fmt.Errorf("bisection interrupted while probing %s: %w", c.Name, ctx.Err())
	}
	if timedOut {
		out, err = Outcome{Verdict: Skip, Reason: fmt.Sprintf("probe did not finish within --probe-timeout %s", e.cfg.ProbeTimeout),
			RunDir: out.RunDir}, nil
	}
	if err != nil {
		if errors.Is(err, ErrAbort) {
			return ProbeRecord{}, fmt.Errorf("probing %s: %w", c.Name, err)
		}
		out = Outcome{Verdict: Skip, Reason: "prober error: " + err.Error(), RunDir: out.RunDir, Duration: out.Duration}
	}
	if !out.Verdict.valid() {
		out = Outcome{Verdict: Skip, Reason: fmt.Sprintf("prober returned verdict %q", out.Verdict), RunDir: out.RunDir}
	}
	if out.Duration == 0 {
		out.Duration = elapsed
	}
	logDir := rel
	if out.RunDir != "" && out.RunDir != runDir {
		logDir = out.RunDir
	}
	rec := ProbeRecord{Round: round, Index: idx, Name: c.Name, Attempt: attempt, Verdict: out.Verdict,
		Reason: out.Reason, RunDir: logDir, Duration: out.Duration}
	if err := e.log.append(Event{Event: EventProbeResult, Round: round, Index: intp(idx), Name: c.Name,
		Attempt: attempt, RunDir: logDir, Verdict: out.Verdict, Reason: out.Reason,
		DurationMS: out.Duration.Milliseconds()}); err != nil {
		return ProbeRecord{}, err
	}
	e.logger.Info("probe result", "candidate", c.Name, "attempt", attempt, "verdict", out.Verdict, "reason", out.Reason, "duration", out.Duration)
	return rec, nil
}
