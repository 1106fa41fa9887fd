package debversion

import (
	"bufio"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The table comes from the real dpkg (gen_dpkg_table.go), so this checks
// Compare against dpkg itself, both directions of every pair.
func TestCompareVersionsMatchesDpkgTable(t *testing.T) {
	f, err := os.Open("testdata/dpkg-compare.txt")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	want := map[string]int{"<": -1, "=": 0, ">": 1}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		parts := strings.Split(line, "\t")
		require.Len(t, parts, 3, line)
		w, ok := want[parts[1]]
		require.True(t, ok, line)
		require.Equal(t, w, Compare(parts[0], parts[2]), "dpkg says %s", line)
		require.Equal(t, -w, Compare(parts[2], parts[0]), "reverse of %s", line)
		n++
	}
	require.NoError(t, sc.Err())
	require.Greater(t, n, 1000, "the dpkg table is suspiciously short")
}

func TestCompareVersionsKernelSeries(t *testing.T) {
	ordered := []string{
		"6.1.0-9", "6.1.0-10", "6.1.0-47", "6.1.0-50", "6.12.9+deb12",
		"6.12.100+deb12", "6.12.111+deb12", "1:5.0",
	}
	shuffled := []string{ordered[5], ordered[7], ordered[0], ordered[3], ordered[6], ordered[1], ordered[4], ordered[2]}
	sort.Slice(shuffled, func(i, j int) bool { return Compare(shuffled[i], shuffled[j]) < 0 })
	require.Equal(t, ordered, shuffled)
	require.Equal(t, -1, Compare("1.0~rc1", "1.0"))
	require.Equal(t, 1, Compare("1.0+b1", "1.0"))
	require.Equal(t, 0, Compare("0:1.0-0", "1.0"))
	require.Equal(t, 1, Compare("100000000000000000000000:1", "99999999999999999999999:9"), "epochs beyond int64")
}
