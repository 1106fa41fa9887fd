package images

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// removeBuildDir removes a build directory that a builder left behind. mmdebstrap
// mounts /proc, /sys, devpts and a tmpfs inside the root it builds, and a builder
// killed half-way leaves them mounted; os.RemoveAll through a live mount deletes what
// the mount shows (through a bind mount, the host's own files). So every mount below
// dir is detached first, deepest first, and if one cannot be, dir is left as it is and
// the error says which mount held it.
func removeBuildDir(dir string) error {
	return removeUnmounted(dir, readMountPoints, detachMount)
}

func removeUnmounted(dir string, mounts func() ([]string, error), detach func(string) error) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("removing build directory %s: %w", dir, err)
	}
	all, err := mounts()
	if err != nil {
		return fmt.Errorf("removing build directory %s: listing mounts: %w", dir, err)
	}
	var under []string
	for _, m := range all {
		if m == abs || strings.HasPrefix(m, abs+string(filepath.Separator)) {
			under = append(under, m)
		}
	}
	// Deepest first: a mount inside another must go before the one that holds it.
	// Ties by name, so a path mounted twice is adjacent and detached once.
	slices.SortFunc(under, func(a, b string) int {
		if d := strings.Count(b, "/") - strings.Count(a, "/"); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, m := range slices.Compact(under) {
		if err := detach(m); err != nil {
			return fmt.Errorf("removing build directory %s: %s is still mounted and was kept: %w", dir, m, err)
		}
	}
	if err := os.RemoveAll(abs); err != nil {
		return fmt.Errorf("removing build directory %s: %w", dir, err)
	}
	return nil
}

// readMountPoints lists this process's mount points (/proc/self/mountinfo).
func readMountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if os.IsNotExist(err) {
		return nil, nil // not Linux: nothing mmdebstrap could have left mounted
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountInfo(f)
}

// parseMountInfo reads the mount points of a mountinfo table (proc(5): the fifth
// field, with space, tab, newline and backslash written as octal escapes).
func parseMountInfo(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		out = append(out, unescapeMountPath(f[4]))
	}
	return out, sc.Err()
}

func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
