package lab

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/vm"
)

// TestQuickStopOnlyWhereNothingIsKept: the stop syncs and quits only when nothing on
// the guest must survive; a kept disk or one the caller brought gets a clean poweroff.
func TestQuickStopOnlyWhereNothingIsKept(t *testing.T) {
	scratch := []vm.DiskSpec{{Name: "disk0.img", SizeMB: 8}}
	brought := []vm.DiskSpec{{Name: "disk0.img", SizeMB: 8}, {Path: "/var/tmp/mine.img"}}
	require.Equal(t, "no disks (read-only media only)", quickStopReason(Options{}))
	require.Equal(t, "only scratch disks, which the run deletes", quickStopReason(Options{VM: vm.Spec{Disks: scratch}}))
	require.Empty(t, quickStopReason(Options{VM: vm.Spec{Disks: scratch}, KeepDisks: true}), "-keep: the disk must be clean")
	require.Empty(t, quickStopReason(Options{VM: vm.Spec{Disks: brought}}), "existing storage, the user's")
	require.Equal(t, "no disks (read-only media only)", quickStopReason(Options{KeepDisks: true}), "-keep keeps nothing without disks")
}
