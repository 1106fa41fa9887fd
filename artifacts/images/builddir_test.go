package images

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestParseMountInfo(t *testing.T) {
	table := `22 1 0:21 / /proc rw,nosuid - proc proc rw
23 22 0:5 / /tmp/cache/.tmp-base-1/rootfs/dev\040pts rw - devpts devpts rw
short line
`
	got, err := parseMountInfo(strings.NewReader(table))
	require.NoError(t, err)
	require.Equal(t, []string{"/proc", "/tmp/cache/.tmp-base-1/rootfs/dev pts"}, got)
}

// A dead builder's directory is removed only after every mount below it is detached,
// deepest first; one that cannot be detached keeps the directory, and the error names it.
func TestRemoveBuildDirDetachesMountsFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".tmp-base-1")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "rootfs", "proc"), 0o755))
	mounts := []string{"/proc", dir + "/rootfs/proc", dir + "/rootfs/dev/pts", dir + "/rootfs/dev", dir + "/rootfs/proc", dir + "-other/x"}
	var detached []string
	err := removeUnmounted(dir, func() ([]string, error) { return mounts, nil }, func(m string) error {
		detached = append(detached, m)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, dir+"/rootfs/dev/pts", detached[0], "the mount inside another goes first")
	require.ElementsMatch(t, []string{dir + "/rootfs/proc", dir + "/rootfs/dev/pts", dir + "/rootfs/dev"}, detached, "only mounts below the directory, each once")
	require.NoDirExists(t, dir)

	require.NoError(t, os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755))
	err = removeUnmounted(dir, func() ([]string, error) { return []string{dir + "/rootfs/sys"}, nil }, func(string) error { return errors.New("busy") })
	require.ErrorContains(t, err, dir+"/rootfs/sys is still mounted and was kept: busy")
	require.DirExists(t, dir, "kept while something is mounted in it")
}

// What the guard is for, with a real mount: a host directory bind-mounted into a dead
// build's root (as a killed mmdebstrap leaves /dev's or /proc's) loses nothing when the
// build directory is cleared. os.RemoveAll alone deletes the host's file through the
// mount. Mounting needs root, so this runs with the VM tests (make vm), not -short.
func TestRemoveBuildDirKeepsBindMountedHostFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a bind mount (root); runs in make vm, not under -short")
	}
	host := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(host, "keep"), []byte("host file"), 0o644))
	dir := filepath.Join(t.TempDir(), ".tmp-base-1")
	mp := filepath.Join(dir, "rootfs", "dev")
	require.NoError(t, os.MkdirAll(mp, 0o755))
	require.NoError(t, unix.Mount(host, mp, "", unix.MS_BIND, ""), "bind mount (needs root)")
	t.Cleanup(func() { _ = unix.Unmount(mp, unix.MNT_DETACH) })

	err := removeBuildDir(dir)
	require.FileExists(t, filepath.Join(host, "keep"), "the host's file survives")
	require.NoError(t, err)
	require.NoDirExists(t, dir)
}
