package labtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
)

// How long each test took, so the slot scheduler starts the longest first with no
// durations written into test code. Two sources, the newer winning:
//   - testdata/durations.json in the test's package: the durations measured in the last
//     full run that was committed (seconds by test name), so a fresh clone orders its
//     first run well;
//   - <cache>/test-durations/<package dir>.json: what this machine measured last, written
//     after every passing test (the slot's hold time, or a shared machine's start and
//     checks).
//
// A test named in neither is expected to take DefaultDuration.

// DefaultDuration is the expectation of a test that was never measured.
const DefaultDuration = 2 * time.Minute

var durMu sync.Mutex

func localDurationsFile() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	return filepath.Join(Config().Cache, "test-durations", filepath.Base(wd)+".json")
}

func readDurations(path string) map[string]float64 {
	m := map[string]float64{}
	if path == "" {
		return m
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &m) // a torn or foreign file orders nothing
	}
	return m
}

// ExpectedDuration is how long the test (or shared machine) name took when last
// measured here, else in the committed measurements, else DefaultDuration.
func ExpectedDuration(name string) time.Duration {
	durMu.Lock()
	defer durMu.Unlock()
	for _, f := range []string{localDurationsFile(), filepath.Join("testdata", "durations.json")} {
		if s, ok := readDurations(f)[name]; ok && s > 0 {
			return time.Duration(s * float64(time.Second))
		}
	}
	return DefaultDuration
}

// RecordDuration keeps d as name's latest measured duration on this machine. A failure
// to write only loses the measurement.
func RecordDuration(name string, d time.Duration) {
	durMu.Lock()
	defer durMu.Unlock()
	path := localDurationsFile()
	if path == "" {
		return
	}
	m := readDurations(path)
	m[name] = d.Round(time.Second).Seconds()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return
	}
	if os.MkdirAll(filepath.Dir(path), 0o755) == nil {
		_ = atomicfile.Write(path, append(b, '\n'), 0o644)
	}
}

// measuredDurations is every measured duration ExpectedDuration would use, by name: the
// committed ones with this machine's laid over them.
func measuredDurations() map[string]time.Duration {
	return durationsFrom(filepath.Join("testdata", "durations.json"), localDurationsFile())
}

// durationsFrom reads duration files, later ones winning.
func durationsFrom(files ...string) map[string]time.Duration {
	durMu.Lock()
	defer durMu.Unlock()
	out := map[string]time.Duration{}
	for _, f := range files {
		for name, s := range readDurations(f) {
			if s > 0 {
				out[name] = time.Duration(s * float64(time.Second))
			}
		}
	}
	return out
}
