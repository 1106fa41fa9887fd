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
	if c.Notes != filepath.Join(os.TempDir(), "bootlab-notes") || c.Cache != "/x/cache" || c.TimeoutScale != 1 || c.Accel != "" || c.QEMU != "" {
		t.Fatalf("defaults: %+v", c)
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
	if c := Env(); c.TimeoutScale != 1 {
		t.Fatalf("Env must fall back to 1, got %v", c.TimeoutScale)
	}
	t.Setenv(EnvTimeoutScale, "")
	t.Setenv(EnvAccel, "qvm")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "kvm or tcg") {
		t.Fatalf("want an accel error, got %v", err)
	}
	if c := Env(); c.Accel != "" {
		t.Fatalf("Env must drop a bad accel, got %q", c.Accel)
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
