package labtest

import (
	"flag"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// goTestDefaultTimeout is go test's -timeout when none is given. The go command passes
// it to the test binary as -test.timeout=10m0s, so inside the binary "none given" and
// "-timeout 10m typed" look the same; both are treated as the default.
const goTestDefaultTimeout = 10 * time.Minute

// coldAllowance is what a cold image cache adds to a package's expected times on the
// reference machine: the fixture's root file system (mmdebstrap, 2-4 min), kernel and
// package downloads, and one held boot per warm image to save its state.
const coldAllowance = 30 * time.Minute

// timeoutFlag reads go test's -timeout as the test binary sees it: whether it was on the
// command line (the go command puts it there unless -timeout 0) and its value.
func timeoutFlag(fs *flag.FlagSet) (set bool, d time.Duration) {
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "test.timeout" })
	if f := fs.Lookup("test.timeout"); f != nil {
		d, _ = time.ParseDuration(f.Value.String())
	}
	return set, d
}

// Expected is how long a package's tests are expected to hold the VM slots: what each
// took when last measured (measuredDurations: this machine's measurements over the
// committed testdata/durations.json), known before any test runs.
type Expected struct {
	PerTest map[string]time.Duration // a top-level test, or a subtest by its full name
	Shared  []time.Duration          // each shared machine (it boots once)
}

// ExpectedFrom sorts measured durations by what they name: a test or subtest
// ("Test..."), or a shared machine. A parent whose subtests were measured counts only
// through them.
func ExpectedFrom(m map[string]time.Duration) Expected {
	e := Expected{PerTest: map[string]time.Duration{}}
	for name, d := range m {
		if strings.HasPrefix(name, "Test") {
			e.PerTest[name] = d
		} else {
			e.Shared = append(e.Shared, d)
		}
	}
	for name := range m {
		if parent, _, ok := strings.Cut(name, "/"); ok {
			delete(e.PerTest, parent)
		}
	}
	return e
}

// Wall is the expected wall time of the selected tests on slots VM slots (the longest
// first, as the scheduler runs them): their total over the slots, but never less than
// the longest one. Every shared VM counts once when any test is selected.
func (e Expected) Wall(selected func(name string) bool, slots int) time.Duration {
	var total, longest time.Duration
	any := false
	for name, d := range e.PerTest {
		top, _, _ := strings.Cut(name, "/") // a subtest runs when its parent is selected
		if selected(top) {
			any = true
			total += d
			longest = max(longest, d)
		}
	}
	if !any {
		return 0
	}
	for _, d := range e.Shared {
		total += d
		longest = max(longest, d)
	}
	return max(total/time.Duration(max(slots, 1)), longest)
}

// Bound is the -timeout that a run expected to take wall on the reference machine
// needs: twice that (a loaded machine) plus a cold cache's builds, scaled like every
// other timeout (-timeout-scale, $BOOTLAB_TIMEOUT_SCALE), rounded up to 5 minutes.
func Bound(wall time.Duration, scale float64) time.Duration {
	b := time.Duration(float64(2*wall+coldAllowance) * scale)
	return (b + 5*time.Minute - 1).Truncate(5 * time.Minute)
}

// checkTimeout is Main's timeout rule. go test's default -timeout (10m) cannot be lifted
// from inside the test binary: the go command kills its test binary one minute after
// its own -timeout whatever the binary sets (SIGQUIT, then SIGKILL), so a run expected
// to need more is refused at once, before any VM boots, saying the flag to add, instead
// of being killed mid-scenario after ten minutes. Any other -timeout, and -timeout 0
// (the binary sees none), is the user's choice and stands. Under -short no VM test runs
// (vmgate), so nothing needs the time.
func checkTimeout(set bool, given, wall time.Duration, scale float64, short bool) error {
	if short || !set || given != goTestDefaultTimeout {
		return nil
	}
	if time.Duration(float64(wall)*scale) <= goTestDefaultTimeout {
		return nil
	}
	return fmt.Errorf("these tests are expected to take about %s here (their Slot times on the reference machine, two cores under TCG), "+
		"more than go test's default -timeout 10m, and the go command stops its test binary one minute after that whatever the binary asks; "+
		"add -timeout %dm (or -timeout 0), or use make scenarios", wall.Round(time.Minute), int(Bound(wall, scale).Minutes()))
}

// runSelector is go test's -run and -skip applied to top-level test names.
func runSelector(run, skip string) func(string) bool {
	top := func(p string) *regexp.Regexp {
		if p == "" {
			return nil
		}
		// Only the top-level part of each alternative matters here: "TestA/x|TestB".
		var alts []string
		for _, a := range strings.Split(p, "|") {
			alts = append(alts, strings.SplitN(a, "/", 2)[0])
		}
		re, err := regexp.Compile(strings.Join(alts, "|"))
		if err != nil {
			return nil // go test itself rejects it
		}
		return re
	}
	runRE, skipRE := top(run), top(skip)
	return func(name string) bool {
		if runRE != nil && !runRE.MatchString(name) {
			return false
		}
		return skipRE == nil || !skipRE.MatchString(name)
	}
}
