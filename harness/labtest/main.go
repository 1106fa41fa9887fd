package labtest

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/bootlab/bootlab/harness/ci"
	"github.com/bootlab/bootlab/harness/lab"
)

var flagScale = flag.Float64("timeout-scale", 0, "multiply every timeout")

// MainOptions are what differs between the packages whose TestMain is Main.
type MainOptions struct {
	// Name prefixes messages ("scenarios: -shard: ...").
	Name string
	// Shard, when set, is the package's own -shard flag (i/n: the nightly matrix runs
	// the i-th share of the package's tests).
	Shard *string
	// After runs once the tests are done (a shared VM's Close).
	After func()
}

// liftParallel raises go test's -parallel (default: the number of cores) unless it was
// given: a test waiting in Slot for a VM counts as running, so with the default the
// scheduler would only ever see as many tests as there are cores and could not start
// the longest first. The VM slots are the limit that matters.
func liftParallel() error {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if given {
		return nil
	}
	return flag.Set("test.parallel", "64")
}

// packageTimeout applies checkTimeout to the tests this run selects (-run, -skip, -shard)
// with the package's measured times (go test runs the binary in the package's directory,
// where testdata/durations.json is).
func packageTimeout() error {
	set, given := timeoutFlag(flag.CommandLine)
	if !set || given != goTestDefaultTimeout || flagValue("test.list") != "" {
		return nil
	}
	e := ExpectedFrom(measuredDurations())
	wall := e.Wall(runSelector(flagValue("test.run"), flagValue("test.skip")), vmSlotCount)
	if wall > 0 && len(readDurations(localDurationsFile())) == 0 {
		wall += ColdCacheAllowance
	}
	return checkTimeout(set, given, wall, Config().TimeoutScale, testing.Short())
}

// ColdCacheAllowance is what a package's first run on a machine adds to its tests' own
// times: the image cache is empty then (the fixture's base ~2-4 min here, docs/images.md)
// and the first warm start of an image saves its state (a held boot, ~1.5 min). A
// machine with no measurements of its own has not run the package yet.
const ColdCacheAllowance = 5 * time.Minute

func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// Main is TestMain for a package whose tests boot through labtest: the flags are parsed
// and checked (a bad one exits 2 before any VM boots), -timeout-scale applies to every
// timeout, go test's default -timeout is checked against the selected tests' expected
// times (checkTimeout), o.Shard selects the package's share of its tests, SIGINT/SIGTERM close every
// open run, and o.After runs once the tests are done.
func Main(m *testing.M, o MainOptions) {
	name := o.Name
	flag.Parse()
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	if err := CheckFlags(); err != nil {
		fail(err)
	}
	if w := TimeoutWarning(); w != "" {
		fmt.Fprintf(os.Stderr, "%s: %s\n", name, w)
	}
	if _, err := fromEnv(); err != nil { // a malformed BOOTLAB_* is a usage error
		fail(err)
	}
	if *flagScale < 0 {
		fail(fmt.Errorf("-timeout-scale must be positive, not %v", *flagScale))
	}
	if o.Shard != nil && *o.Shard != "" {
		i, n, err := ci.ParseShard(*o.Shard)
		if err != nil {
			fail(fmt.Errorf("-shard: %w", err))
		}
		tests, err := ci.ScenarioTests(".")
		if err != nil {
			fail(fmt.Errorf("listing the tests to shard: %w", err))
		}
		pattern, err := filterThenShard(tests, flag.Lookup("test.run").Value.String(), i, n)
		if err != nil {
			fail(err)
		}
		if err := flag.Set("test.run", pattern); err != nil {
			fail(err)
		}
	}
	if err := packageTimeout(); err != nil {
		fail(err)
	}
	if err := liftParallel(); err != nil {
		fail(err)
	}
	lab.HandleSignals()
	code := m.Run()
	closeSharedMachines()
	if o.After != nil {
		o.After()
	}
	os.Exit(code)
}
