package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadFactor(t *testing.T) {
	for _, c := range []struct {
		loadavg string
		cpus    int
		want    float64
	}{
		{"20.00 18.50 12.00 12/345 6789\n", 2, 10},
		{"0.40 0.30 0.20 1/100 1\n", 2, 1},
		{"3.00 1 1 1/1 1", 2, 1.5},
		{"900 1 1 1/1 1", 2, MaxLoadFactor},
		{"", 2, 1},
		{"garbage", 2, 1},
		{"4.0", 0, 1},
	} {
		require.InDelta(t, c.want, loadFactor(c.loadavg, c.cpus), 1e-9, "%q on %d cpus", c.loadavg, c.cpus)
	}
	f := filepath.Join(t.TempDir(), "loadavg")
	require.NoError(t, os.WriteFile(f, []byte("1000.0 1 1 1/1 1\n"), 0o644))
	old := loadAvgFile
	loadAvgFile = f
	defer func() { loadAvgFile = old }()
	require.Equal(t, float64(MaxLoadFactor), LoadFactor())
	loadAvgFile = filepath.Join(t.TempDir(), "missing")
	require.Equal(t, 1.0, LoadFactor())
}
