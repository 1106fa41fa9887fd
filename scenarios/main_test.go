// Package scenarios is the end-to-end suite users run every night: `go test ./scenarios`.
// Each scenario boots the fixture ISO (built from Debian packages and cached) or an
// upstream baseline and checks what pre-nixos and the image promise. Every scenario
// leaves a run directory; a failing one leaves the diagnostics and captures that explain
// it.
//
// Flags (after `go test ./scenarios`):
//
//	-boot-image-debug   on failure keep the VM up, serve its console for bootlab attach
//	                    (a shared VM is kept once, after its last scenario; flags from labtest)
//	-pause-after STAGE  pause each fixture VM after login, storage or network
//	-debug-wait D       without a terminal, how long a kept VM waits (default 10m)
//	-iso PATH           run the fixture scenarios against this ISO instead of building one
//	-profile NAME       the image profile of -iso: fixture (default) or nixos; unit names,
//	                    key paths, login and poweroff come from it (docs/nixos.md)
//	-entry LABEL        boot this entry of the ISO's menu (label, title or regexp)
//	-boot MODE          direct, firmware or auto (default): how the ISO is booted
//	-kernel/-initrd/-append  boot this kernel for the kernel-series scenario instead
//	-accel kvm|tcg      skip the KVM probe
//	-keep               keep the disk images (deleted when each run closes otherwise)
//	-notes DIR          where run directories go (default $BOOTLAB_NOTES, else
//	                    $TMPDIR/bootlab-notes: harness/config's one default)
//	-timeout-scale F    multiply every timeout (slow machines)
//	-shard i/n          run only the i-th of n shards (the nightly matrix)
package scenarios

import (
	"flag"
	"testing"

	"github.com/bootlab/bootlab/harness/labtest"
)

var (
	flagKernel = flag.String("kernel", "", "kernel-series scenario: boot only this kernel")
	flagInitrd = flag.String("initrd", "", "with -kernel: its initrd")
	flagAppend = flag.String("append", "", "with -kernel: its command line")
	flagShard  = flag.String("shard", "", "run shard i/n of the scenarios (nightly matrix)")
)

// TestMain: every flag but the four above is labtest's (-boot-image-debug,
// -pause-after, -debug-wait, -accel, -keep, -notes, -captures, -iso, -profile, -entry,
// -boot, -timeout-scale), so every package that boots through labtest.StartT
// takes them the same way. Shared machines close after the last scenario (labtest.Main).
func TestMain(m *testing.M) {
	labtest.Main(m, labtest.MainOptions{Name: "scenarios", Shard: flagShard})
}
