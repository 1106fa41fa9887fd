// Package scenarios is the end-to-end suite users run every night: `go test ./scenarios`.
// Each scenario boots the fixture ISO (built from Debian packages and cached) or an
// upstream baseline and checks what pre-nixos and the image promise. Every scenario
// leaves a run directory; a failing one leaves the diagnostics and captures that explain
// it.
//
// Flags (after `go test ./scenarios`):
//
//	-boot-image-debug   on failure keep the VM up, serve its console for `bootlab attach`
//	-iso PATH           run the fixture scenarios against this ISO instead of building one
//	-entry LABEL        boot this entry of the ISO's menu (label, title or regexp)
//	-boot MODE          direct, firmware or auto (default): how the ISO is booted
//	-kernel/-initrd/-append  boot this kernel for the kernel-series scenario instead
//	-accel kvm|tcg      skip the KVM probe
//	-keep               keep passing runs' disk images (they are deleted otherwise)
//	-notes DIR          where run directories go (default $BOOTLAB_NOTES or a temp dir)
//	-timeout-scale F    multiply every timeout (slow machines)
//	-shard i/n          run only the i-th of n shards (the nightly matrix)
package scenarios

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/ship"
)

var (
	flagDebug     = flag.Bool("boot-image-debug", false, "on failure keep the VM running for `bootlab attach` (bounded wait without a terminal)")
	flagISO       = flag.String("iso", "", "fixture scenarios boot this ISO instead of the one built from Debian packages")
	flagEntry     = flag.String("entry", "", "boot this entry of the ISO's boot menu (label, title or regexp; default: the menu's default)")
	flagBoot      = flag.String("boot", lab.BootAuto, "how the ISO boots: direct, firmware or auto")
	flagKernel    = flag.String("kernel", "", "kernel-series scenario: boot only this kernel")
	flagInitrd    = flag.String("initrd", "", "with -kernel: its initrd")
	flagAppend    = flag.String("append", "", "with -kernel: its command line")
	flagAccel     = flag.String("accel", "", "kvm or tcg (default: probe)")
	flagKeep      = flag.Bool("keep", false, "keep the disk images of passing runs")
	flagNotes     = flag.String("notes", "", "run directories go here (default $BOOTLAB_NOTES or a temp dir)")
	flagScale     = flag.Float64("timeout-scale", 0, "multiply every timeout")
	flagShard     = flag.String("shard", "", "run shard i/n of the scenarios (nightly matrix)")
	flagDebugWait = flag.Duration("debug-wait", 0, "with -boot-image-debug and no terminal: how long to keep a failed VM (default 10m)")
)

func TestMain(m *testing.M) {
	flag.Parse()
	if *flagScale > 0 {
		os.Setenv("BOOTLAB_TIMEOUT_SCALE", strconv.FormatFloat(*flagScale, 'f', -1, 64))
	}
	if *flagShard != "" {
		i, n, err := ship.ParseShard(*flagShard)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scenarios: -shard:", err)
			os.Exit(2)
		}
		tests, err := ship.ScenarioTests(".")
		if err != nil {
			fmt.Fprintln(os.Stderr, "scenarios: listing scenarios:", err)
			os.Exit(2)
		}
		if err := flag.Set("test.run", ship.RunPattern(ship.Shard(tests, i, n))); err != nil {
			fmt.Fprintln(os.Stderr, "scenarios:", err)
			os.Exit(2)
		}
	}
	lab.HandleSignals()
	code := m.Run()
	closeShared()
	os.Exit(code)
}

func notesRoot() string {
	if *flagNotes != "" {
		return *flagNotes
	}
	if n := os.Getenv("BOOTLAB_NOTES"); n != "" {
		return n
	}
	return filepath.Join(os.TempDir(), "bootlab-scenarios")
}
