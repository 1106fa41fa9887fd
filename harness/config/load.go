package config

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// MaxLoadFactor bounds LoadFactor: past it a machine is not slow but stuck, and a wait
// stretched further would only hide that.
const MaxLoadFactor = 20

// loadAvgFile is where the kernel publishes the load average (a variable for tests).
var loadAvgFile = "/proc/loadavg"

// LoadFactor measures how much slower than on an idle machine a guest runs now: the
// 1-minute load average per core, at least 1 and at most MaxLoadFactor. Under TCG each
// guest keeps a core busy, so on two cores at load 20 every process gets about a tenth
// of a core and QEMU takes ten times as long to start, boot and answer. Timeouts that
// bound the machine's own work (not a guest's silence) multiply by it as well as by
// the timeout scale. Without /proc/loadavg it is 1.
func LoadFactor() float64 {
	b, err := os.ReadFile(loadAvgFile)
	if err != nil {
		return 1
	}
	return loadFactor(string(b), runtime.NumCPU())
}

func loadFactor(loadavg string, cpus int) float64 {
	f := strings.Fields(loadavg)
	if len(f) == 0 || cpus < 1 {
		return 1
	}
	l, err := strconv.ParseFloat(f[0], 64)
	if err != nil || l <= 0 {
		return 1
	}
	return min(max(l/float64(cpus), 1), MaxLoadFactor)
}
