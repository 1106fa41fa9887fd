// Package config is bootlab's configuration in one place: one struct, built once from
// the BOOTLAB_* environment and the command's flags (flags win), then passed down
// explicitly. FromEnv is called once, at the edge (bootlab's main, labtest's TestMain
// level); no package below reads BOOTLAB_*: lab derives every VM default (cache, probe
// kernel and cache, scaled timeouts, accelerator, QEMU binary) from the Config it is
// given, and artifacts take these values as parameters (images.Cache, runrec.Create,
// which refuses an empty notes root). This package imports nothing of bootlab's and not
// package testing, so the QEMU wrapper does not depend on the image builder and the
// bootlab binary does not link the test framework.
//
// Every variable, its flag and its default:
//
//	BOOTLAB_NOTES          --notes          where run directories and ledger.jsonl go.
//	                                        Default docs/work-notes relative to the
//	                                        working directory; a test binary's edge
//	                                        (labtest, bootlab's TestMain) starts from
//	                                        TestNotes(), $TMPDIR/bootlab-notes, instead
//	                                        (tests stay out of the source tree, and
//	                                        console socket paths stay short).
//	BOOTLAB_CACHE          (none)           built images, downloaded packages, the accel
//	                                        probe cache. Default $XDG_CACHE_HOME/bootlab,
//	                                        else ~/.cache/bootlab (os.UserCacheDir).
//	BOOTLAB_ACCEL          --accel          kvm or tcg; empty probes KVM with a real boot
//	                                        and falls back to TCG.
//	BOOTLAB_TIMEOUT_SCALE  --timeout-scale  multiplies every VM timeout (default 1).
//	BOOTLAB_QEMU           --qemu           the QEMU binary, a name on PATH or a path
//	                                        (default qemu-system-x86_64). Honoured by
//	                                        every boot (qemu.FindBinary), not only by
//	                                        bootlab run.
//
// Variables bootlab sets for a predicate it runs (BOOTLAB_SSH_PORT,
// BOOTLAB_CONSOLE_SOCKET, BOOTLAB_CANDIDATE, BOOTLAB_KERNEL, ...; docs/bisect.md) are
// outputs, not configuration, and are not read here.
package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// The environment variables, by name.
const (
	EnvNotes        = "BOOTLAB_NOTES"
	EnvCache        = "BOOTLAB_CACHE"
	EnvAccel        = "BOOTLAB_ACCEL"
	EnvTimeoutScale = "BOOTLAB_TIMEOUT_SCALE"
	EnvQEMU         = "BOOTLAB_QEMU"
)

// Config is what a bootlab command or test binary runs with.
type Config struct {
	// Notes is the notes root: run directories and ledger.jsonl.
	Notes string
	// Cache is the image cache root.
	Cache string
	// Accel is "kvm", "tcg" or "" (probe).
	Accel string
	// TimeoutScale multiplies every VM timeout; always > 0.
	TimeoutScale float64
	// QEMU is the QEMU binary ("" = qemu-system-x86_64 on PATH).
	QEMU string
}

// Defaults is the configuration when no variable and no flag says otherwise.
func Defaults() Config {
	return Config{Notes: filepath.Join("docs", "work-notes"), Cache: DefaultCache(), TimeoutScale: 1}
}

// TestNotes is the notes default of a test binary: out of the source tree, and short
// enough for the console sockets under it.
func TestNotes() string { return filepath.Join(os.TempDir(), "bootlab-notes") }

// DefaultCache is the image cache when BOOTLAB_CACHE is unset: $XDG_CACHE_HOME/bootlab,
// else ~/.cache/bootlab; deliberately outside the git clone so `git clean` and fresh
// clones keep the (slow to build) images.
func DefaultCache() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "bootlab")
	}
	return filepath.Join(os.TempDir(), "bootlab-cache")
}

// FromEnv builds the configuration from BOOTLAB_* and Defaults. A malformed value
// (BOOTLAB_ACCEL=qvm, BOOTLAB_TIMEOUT_SCALE=fast) is an error: a setting silently
// ignored is worse than a refusal to start.
func FromEnv() (Config, error) { return OverEnv(Defaults()) }

// OverEnv lays BOOTLAB_* over base (a test binary's edge passes Defaults with
// TestNotes); the result is validated.
func OverEnv(base Config) (Config, error) {
	c := base
	if v := os.Getenv(EnvNotes); v != "" {
		c.Notes = v
	}
	if v := os.Getenv(EnvCache); v != "" {
		c.Cache = v
	}
	if v := os.Getenv(EnvAccel); v != "" {
		c.Accel = v
	}
	if v := os.Getenv(EnvQEMU); v != "" {
		c.QEMU = v
	}
	if v := os.Getenv(EnvTimeoutScale); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return c, fmt.Errorf("%s=%q: want a positive number", EnvTimeoutScale, v)
		}
		c.TimeoutScale = f
	}
	return c, c.Validate()
}

// Validate checks the values a flag or variable may have set.
func (c Config) Validate() error {
	switch c.Accel {
	case "", "kvm", "tcg":
	default:
		return fmt.Errorf("--accel must be kvm or tcg, not %q (--accel, %s)", c.Accel, EnvAccel)
	}
	if c.TimeoutScale <= 0 {
		return fmt.Errorf("--timeout-scale must be positive, not %v (--timeout-scale, %s)", c.TimeoutScale, EnvTimeoutScale)
	}
	return nil
}

// Flag names, for commands that register only some of them.
const (
	FlagNotes        = "notes"
	FlagAccel        = "accel"
	FlagTimeoutScale = "timeout-scale"
	FlagQEMU         = "qemu"
)

// AddFlags registers the flags named (all four when none are) on fs, their defaults
// taken from c, so that parsing fs overrides the environment. Call Validate after
// parsing.
func (c *Config) AddFlags(fs *flag.FlagSet, names ...string) {
	if len(names) == 0 {
		names = []string{FlagNotes, FlagAccel, FlagTimeoutScale, FlagQEMU}
	}
	for _, n := range names {
		switch n {
		case FlagNotes:
			fs.StringVar(&c.Notes, n, c.Notes, "run directories and ledger.jsonl go here ($"+EnvNotes+"; default docs/work-notes)")
		case FlagAccel:
			fs.StringVar(&c.Accel, n, c.Accel, "kvm or tcg ($"+EnvAccel+"; default: probe KVM with a real boot, TCG if it hangs)")
		case FlagTimeoutScale:
			fs.Float64Var(&c.TimeoutScale, n, c.TimeoutScale, "multiply every timeout ($"+EnvTimeoutScale+")")
		case FlagQEMU:
			fs.StringVar(&c.QEMU, n, c.QEMU, "the QEMU binary ($"+EnvQEMU+"; default qemu-system-x86_64)")
		default:
			panic("config: unknown flag " + n)
		}
	}
}
