package bench

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/stretchr/testify/require"
)

func TestKernelMarks(t *testing.T) {
	serial := "[   15.521500] Run /init as init process\n[   78.987520] Not activating Mandatory Access Control as /sbin/tomoyo-init does not exist.\n" +
		"[  152.325322] systemd[1]: Inserted module 'autofs4'\n[  152.567331] random: crng init done\n[  152.780529] systemd[1]: systemd 252.39-1~deb12u2 running in system mode\n"
	require.Equal(t, map[string]float64{"initramfs": 15.5215, "switch_root": 78.98752, "crng": 152.567331, "systemd": 152.780529}, KernelMarks(serial))
	require.Empty(t, KernelMarks("no kernel here\n"))
}

func TestBootTable(t *testing.T) {
	rs := []BootResult{
		{Variant: BootVariant{Name: "mini", Image: "mini"}, Load: "0.1 0.2 0.3", At: map[string]time.Duration{"root_shell": 7 * time.Second}},
		{Variant: BootVariant{Name: "fw", Image: "fixture", Why: "w"}, Load: "1 1 1", At: map[string]time.Duration{"kernel": 5 * time.Second, "root_shell": 80 * time.Second},
			Analyze: "Startup finished in 40s", Blame: []string{"9s pre-nixos.service"}, Kernel: map[string]float64{"crng": 60}},
		{Variant: BootVariant{Name: "direct", Image: "fixture"}, At: map[string]time.Duration{"root_shell": 40 * time.Second}},
		{Variant: BootVariant{Name: "broken", Image: "fixture"}, At: map[string]time.Duration{}, Err: errors.New("no login\nmore")},
	}
	tab := BootTable(rs)
	for _, want := range []string{
		"| mini | 0.1 0.2 0.3 | - | - | - | - | 7.0 s |  |",
		"| fw | 1 1 1 | - | 5.0 s | - | - | 80.0 s | 1.00x |",
		"| direct |  | - | - | - | - | 40.0 s | 0.50x |",
		"| broken |", "failed: no login |",
		"- fw (w): Startup finished in 40s; kernel clock: crng 60.0; slowest units: 9s pre-nixos.service",
	} {
		require.Contains(t, tab, want)
	}
	require.False(t, strings.Contains(tab, "more"), "only an error's first line goes in the table")
}

func TestFindBootVariants(t *testing.T) {
	vs, err := FindBootVariants([]string{"fixture-direct", "mini"})
	require.NoError(t, err)
	require.Equal(t, "fixture-direct", vs[0].Name)
	require.Equal(t, "mini", vs[1].Name)
	_, err = FindBootVariants([]string{"nope"})
	require.ErrorContains(t, err, `unknown boot variant "nope"`)
}

// The lean-boot levers are measured one at a time: each single-lever variant differs
// from fixture-debian in exactly one thing (a base field or the CD-ROM bus), and every
// base the catalogue names is one the builder accepts.
func TestLeverVariantsChangeOneThing(t *testing.T) {
	vs, err := FindBootVariants([]string{"fixture-debian", "fixture-scsicd", "fixture-lean-initramfs", "fixture-lean-units", "fixture-sq-lz4", "fixture-sq-64k"})
	require.NoError(t, err)
	deb := vs[0]
	require.Equal(t, images.DebianFixtureBase(), *deb.Base)
	for _, v := range vs[1:] {
		require.NoError(t, v.Base.Validate(), v.Name)
		diffs := 0
		if v.CDROMBus != deb.CDROMBus {
			diffs++
		}
		a, b := *v.Base, *deb.Base
		if a.Initramfs != b.Initramfs {
			diffs++
		}
		if a.Units != b.Units {
			diffs++
		}
		if a.Compressor != b.Compressor || a.CompressionLevel != b.CompressionLevel {
			diffs++
		}
		if a.BlockKB != b.BlockKB {
			diffs++
		}
		require.Equal(t, 1, diffs, "%s changes %d levers", v.Name, diffs)
	}
	for _, v := range BootVariants {
		if v.Base != nil {
			require.NoError(t, v.Base.Validate(), v.Name)
		}
	}
}
