package labtest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestListeningAddrsFindsALoopbackListener(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	require.Equal(t, []string{"127.0.0.1"}, ListeningAddrs(t, ln.Addr().String()))
	// A connection to it is not a listener: still one address.
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, []string{"127.0.0.1"}, ListeningAddrs(t, ln.Addr().String()))

	all, err := net.Listen("tcp4", "0.0.0.0:0")
	require.NoError(t, err)
	defer all.Close()
	_, port, _ := net.SplitHostPort(all.Addr().String())
	require.Equal(t, []string{"0.0.0.0"}, ListeningAddrs(t, net.JoinHostPort("127.0.0.1", port)), "a wildcard bind is seen as such")
}

func TestExpectedDurationPrefersThisMachinesMeasurement(t *testing.T) {
	withCache(t, t.TempDir())
	dir := t.TempDir()
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.NoError(t, os.Chdir(dir))
	t.Cleanup(func() { _ = os.Chdir(wd) })

	require.Equal(t, DefaultDuration, ExpectedDuration("TestX"), "never measured")
	require.NoError(t, os.MkdirAll("testdata", 0o755))
	require.NoError(t, os.WriteFile(filepath.Join("testdata", "durations.json"), []byte(`{"TestX": 75}`), 0o644))
	require.Equal(t, 75*time.Second, ExpectedDuration("TestX"), "the committed measurement")
	RecordDuration("TestX", 41*time.Second+400*time.Millisecond)
	require.Equal(t, 41*time.Second, ExpectedDuration("TestX"), "this machine's last measurement wins")
	RecordDuration("TestY", 3*time.Second)
	require.Equal(t, 41*time.Second, ExpectedDuration("TestX"), "recording one test keeps the others")
}

// The timeout rule counts tests by their measured durations; a parent measured through
// its subtests counts once, through them.
func TestExpectedFromMeasuredDurations(t *testing.T) {
	e := ExpectedFrom(map[string]time.Duration{
		"TestSlotted":         time.Minute,
		"TestBooted":          4 * time.Minute,
		"TestSeries":          3 * time.Minute,
		"TestSeries/kernel-a": time.Minute,
		"TestSeries/kernel-b": time.Minute,
		"standard":            90 * time.Second,
	})
	require.NotContains(t, e.PerTest, "TestSeries", "measured through its subtests")
	require.Equal(t, 4*time.Minute, e.PerTest["TestBooted"])
	require.Equal(t, []time.Duration{90 * time.Second}, e.Shared)
	all := func(string) bool { return true }
	// 1+4+1+1 minutes of tests and 1.5 of the shared machine on two slots.
	require.Equal(t, 4*time.Minute+15*time.Second, e.Wall(all, 2))
	onlySeries := func(name string) bool { return name == "TestSeries" }
	// Two 1-minute subtests and the 1.5-minute shared machine on two slots.
	require.Equal(t, 105*time.Second, e.Wall(onlySeries, 2), "the subtests of a selected parent, and the shared machine")
}

// withCache points Config().Cache at dir for t: the environment is read once per test
// binary (fromEnv), so a test changes the configuration, not BOOTLAB_CACHE.
func withCache(t *testing.T, dir string) {
	t.Helper()
	_, _ = fromEnv()
	old := envConf
	envConf.Cache = dir
	t.Cleanup(func() { envConf = old })
}
