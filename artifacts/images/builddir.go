package images

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bootlab/bootlab/provisioner/detect"
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
	slices.SortFunc(under, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
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

// readMountPoints lists this process's mount points (/proc/self/mounts, read as
// pre-nixos reads it).
func readMountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mounts")
	if os.IsNotExist(err) {
		return nil, nil // not Linux: nothing mmdebstrap could have left mounted
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ms, err := detect.ParseMounts(f)
	var out []string
	for _, m := range ms {
		out = append(out, m.Target)
	}
	return out, err
}
