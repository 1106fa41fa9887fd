package images

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The installer ISOs a bisection runs on are built reproducibly: building the same
// inputs again, later and elsewhere, gives the same bytes as the cached ISO (every date
// on it is fixed, so neither the build time nor the staged files' times leak in), and
// a kernel from the archive replaces only the kernel.
func TestInstallerISOIsReproducible(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	shipped, err := testCache().BuildInstallerISO(ctx, InstallerISOSpec{Name: "di-netboot"})
	require.NoError(t, err)
	require.Equal(t, shipped.InstallerRelease, shipped.KernelRelease, "the netboot package's own kernel")

	tree, err := testCache().DebianInstallerNetbootTree(ctx)
	require.NoError(t, err)
	// A second apart at least: a date taken from the clock would differ.
	time.Sleep(1100 * time.Millisecond)
	again := filepath.Join(t.TempDir(), "again.iso")
	require.NoError(t, buildInstallerISO(ctx, tree, filepath.Join(tree, "debian-installer/amd64/linux"), again, t.TempDir()))
	want, err := fileSHA256(shipped.Path)
	require.NoError(t, err)
	got, err := fileSHA256(again)
	require.NoError(t, err)
	require.Equal(t, want, got, "the same inputs built again")

	series, err := KernelSeries(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, series)
	newest := series[len(series)-1]
	// Named as the bisection's series names it, so both use one cached ISO.
	name := "di-" + strings.TrimSuffix(strings.TrimPrefix(newest, "linux-image-"), "-amd64")
	other, err := testCache().BuildInstallerISO(ctx, InstallerISOSpec{Name: name, KernelPackage: newest})
	require.NoError(t, err)
	require.Equal(t, shipped.InstallerRelease, other.InstallerRelease)
	require.Equal(t, newest, "linux-image-"+other.KernelRelease, "the kernel on the ISO is the package's")
	require.NotEqual(t, shipped.Path, other.Path)
}

// An ISO's name becomes a path in the image cache: one that could leave it is refused
// before anything is fetched or built.
func TestInstallerISONameStaysInTheCache(t *testing.T) {
	for _, name := range []string{"", "../x", "a/b", "di netboot"} {
		_, err := testCache().BuildInstallerISO(context.Background(), InstallerISOSpec{Name: name})
		require.ErrorContains(t, err, "want letters, digits", "name %q", name)
	}
}
