package labtest

import (
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The go command passes -test.timeout=10m0s when no -timeout was typed, nothing when
// -timeout 0 was: timeoutFlag tells them apart as the test binary sees them.
func TestTimeoutFlagAsTheBinarySeesIt(t *testing.T) {
	for _, tc := range []struct {
		args []string
		set  bool
		d    time.Duration
	}{
		{nil, false, 0}, // -timeout 0, or the binary run by hand
		{[]string{"-test.timeout=10m0s"}, true, 10 * time.Minute}, // go test's default
		{[]string{"-test.timeout=70m0s"}, true, 70 * time.Minute}, // make scenarios
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.Duration("test.timeout", 0, "")
		require.NoError(t, fs.Parse(tc.args))
		set, d := timeoutFlag(fs)
		require.Equal(t, tc.set, set, "%v", tc.args)
		require.Equal(t, tc.d, d, "%v", tc.args)
	}
}

func TestCheckTimeoutRule(t *testing.T) {
	long, short := 14*time.Minute, 3*time.Minute
	// go test's default and more work than it allows: refused, naming the flag to add.
	err := checkTimeout(true, goTestDefaultTimeout, long, 1, false)
	require.Error(t, err)
	require.Contains(t, err.Error(), "add -timeout 60m (or -timeout 0)")
	// Work that fits the default runs under it.
	require.NoError(t, checkTimeout(true, goTestDefaultTimeout, short, 1, false))
	// ... unless the machine is scaled slow enough not to fit.
	require.Error(t, checkTimeout(true, goTestDefaultTimeout, short, 4, false))
	// Any -timeout the user chose stands, and -timeout 0 arrives as none.
	require.NoError(t, checkTimeout(true, 70*time.Minute, long, 1, false))
	require.NoError(t, checkTimeout(true, time.Minute, long, 1, false))
	require.NoError(t, checkTimeout(false, 0, long, 1, false))
	// Under -short every VM test skips: the default is enough.
	require.NoError(t, checkTimeout(true, goTestDefaultTimeout, long, 1, true))
}

func TestBoundFromExpectedTimes(t *testing.T) {
	require.Equal(t, 60*time.Minute, Bound(14*time.Minute, 1)) // 2*14+30 = 58 -> 60
	require.Equal(t, 120*time.Minute, Bound(14*time.Minute, 2))
	require.Equal(t, 30*time.Minute, Bound(0, 1))
}

func TestExpectedWall(t *testing.T) {
	e := ExpectedFrom(map[string]time.Duration{"TestA": 4 * time.Minute, "TestB": 2 * time.Minute, "s": 90 * time.Second})
	require.Equal(t, map[string]time.Duration{"TestA": 4 * time.Minute, "TestB": 2 * time.Minute}, e.PerTest)
	require.Equal(t, []time.Duration{90 * time.Second}, e.Shared)

	all := runSelector("", "")
	// (4m + 2m + 1.5m) over two slots; never below the longest test.
	require.Equal(t, 4*time.Minute, e.Wall(all, 2))
	require.Equal(t, 5*time.Minute+30*time.Second, e.Wall(runSelector("TestA", ""), 1))
	require.Equal(t, 7*time.Minute+30*time.Second, e.Wall(all, 1))
	require.Equal(t, time.Duration(0), e.Wall(runSelector("TestNone", ""), 2))
	require.Equal(t, 2*time.Minute+90*time.Second, e.Wall(runSelector("", "TestA"), 1))
	// Only the top-level part of a -run pattern selects.
	require.Equal(t, 4*time.Minute, e.Wall(runSelector("TestA/sub|TestB", ""), 2))
	require.Equal(t, 3*time.Minute+30*time.Second, e.Wall(runSelector("TestB", ""), 1))
}

// The card's command on a fresh clone: the scenarios' committed times plus a cold image
// cache exceed go test's default -timeout, so it is refused at once with the flag to
// add; a -run of one scenario fits and runs.
func TestScenariosUnderTheDefaultTimeout(t *testing.T) {
	e := ExpectedFrom(durationsFrom("../../scenarios/testdata/durations.json"))
	require.GreaterOrEqual(t, len(e.PerTest), 10, "the scenarios' committed measurements are read")
	// A fresh clone has no measurements of its own: its image cache is cold too.
	wall := e.Wall(runSelector("", ""), 2) + ColdCacheAllowance
	require.Greater(t, wall, goTestDefaultTimeout)
	require.ErrorContains(t, checkTimeout(true, goTestDefaultTimeout, wall, 1, false), "add -timeout")
	require.NoError(t, checkTimeout(true, goTestDefaultTimeout, e.Wall(runSelector("^TestUpstreamInstallerShell$", ""), 2), 1, false))
}
