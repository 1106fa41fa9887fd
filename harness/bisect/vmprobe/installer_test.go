package vmprobe

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/shell"
)

// The installer ISO series starts with the installer as shipped and the archive's
// package of its own kernel (both good), then the newest later kernel of its line and
// the newest of all: the answer lies inside the list.
func TestInstallerSeriesPicksAroundTheInstallersKernel(t *testing.T) {
	series := []string{"linux-image-6.1.0-47-amd64", "linux-image-6.1.0-50-amd64", "linux-image-6.1.0-51-amd64",
		"linux-image-6.1.0-57-amd64", "linux-image-6.12.100+deb12-amd64", "linux-image-6.12.118+deb12-amd64"}
	got, err := installerSeries(series, "6.1.0-50-amd64")
	require.NoError(t, err)
	require.Equal(t, []images.InstallerISOSpec{
		{Name: "di-netboot"},
		{Name: "di-6.1.0-50", KernelPackage: "linux-image-6.1.0-50-amd64"},
		{Name: "di-6.1.0-57", KernelPackage: "linux-image-6.1.0-57-amd64"},
		{Name: "di-6.12.118+deb12", KernelPackage: "linux-image-6.12.118+deb12-amd64"},
	}, got)

	// Only a newer line after the installer's: one later kernel, not the same twice.
	got, err = installerSeries(series[:2:2], "6.1.0-47-amd64")
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, "linux-image-6.1.0-50-amd64", got[2].KernelPackage)

	_, err = installerSeries(series, "6.1.0-49-amd64")
	require.ErrorContains(t, err, "has no linux-image-6.1.0-49-amd64 (the installer's own kernel)")
	_, err = installerSeries(series, "6.12.118+deb12-amd64")
	require.ErrorContains(t, err, "no kernel newer than the installer's")
}

// Debian's installer gets 1024 MiB unless the prober was given a size: at 512 it would
// enter its low-memory mode, whose dialogs the walk to its shell does not know.
func TestInstallerCandidatesGetEnoughMemory(t *testing.T) {
	require.Equal(t, 1024, memoryFor(0, shell.DebianInstaller))
	require.Equal(t, 512, memoryFor(0, shell.Mini))
	require.Equal(t, 768, memoryFor(768, shell.DebianInstaller), "--memory wins")
}
