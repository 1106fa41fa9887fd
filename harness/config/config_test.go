package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFromEnvDefaultsAndOverrides(t *testing.T) {
	for _, k := range []string{EnvNotes, EnvAccel, EnvTimeoutScale, EnvQEMU} {
		t.Setenv(k, "")
	}
	t.Setenv(EnvCache, "/x/cache")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.Notes != filepath.Join("docs", "work-notes") || c.Cache != "/x/cache" || c.TimeoutScale != 1 || c.Accel != "" || c.QEMU != "" {
		t.Fatalf("defaults: %+v", c)
	}
	base := Defaults()
	base.Notes = TestNotes()
	if c, err = OverEnv(base); err != nil || c.Notes != filepath.Join(os.TempDir(), "bootlab-notes") {
		t.Fatalf("a test binary's base keeps its notes in $TMPDIR: %+v, %v", c, err)
	}
	t.Setenv(EnvNotes, "/n")
	t.Setenv(EnvAccel, "tcg")
	t.Setenv(EnvTimeoutScale, "2.5")
	t.Setenv(EnvQEMU, "qemu-x")
	c, err = FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c != (Config{Notes: "/n", Cache: "/x/cache", Accel: "tcg", TimeoutScale: 2.5, QEMU: "qemu-x"}) {
		t.Fatalf("from env: %+v", c)
	}
}

func TestMalformedEnvIsAnError(t *testing.T) {
	t.Setenv(EnvTimeoutScale, "fast")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), EnvTimeoutScale) {
		t.Fatalf("want an error naming %s, got %v", EnvTimeoutScale, err)
	}
	t.Setenv(EnvTimeoutScale, "")
	t.Setenv(EnvAccel, "qvm")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "kvm or tcg") {
		t.Fatalf("want an accel error, got %v", err)
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	t.Setenv(EnvNotes, "/from-env")
	t.Setenv(EnvTimeoutScale, "3")
	t.Setenv(EnvAccel, "")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.AddFlags(fs, FlagNotes, FlagTimeoutScale)
	if fs.Lookup(FlagQEMU) != nil {
		t.Fatal("only the named flags are registered")
	}
	if err := fs.Parse([]string{"-notes", "/from-flag"}); err != nil {
		t.Fatal(err)
	}
	if c.Notes != "/from-flag" || c.TimeoutScale != 3 {
		t.Fatalf("flags over env: %+v", c)
	}
	fs = flag.NewFlagSet("y", flag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"-timeout-scale", "0"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil {
		t.Fatal("a zero scale must not validate")
	}
}

func TestCacheDefault(t *testing.T) {
	t.Setenv(EnvCache, "")
	t.Setenv("XDG_CACHE_HOME", "/x/xdg")
	if c, err := FromEnv(); err != nil || c.Cache != "/x/xdg/bootlab" {
		t.Fatalf("XDG_CACHE_HOME: %+v, %v", c, err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/x/home")
	if c, err := FromEnv(); err != nil || c.Cache != "/x/home/.cache/bootlab" {
		t.Fatalf("HOME: %+v, %v", c, err)
	}
	t.Setenv(EnvCache, "/x/bl")
	if c, err := FromEnv(); err != nil || c.Cache != "/x/bl" {
		t.Fatalf("%s: %+v, %v", EnvCache, c, err)
	}
}
