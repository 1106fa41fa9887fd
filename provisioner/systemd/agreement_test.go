// Package systemd holds the fixture image's unit files; this test keeps their semantics
// the same as the NixOS module's, so one provisioner has one unit behaviour on every
// image (docs/decisions.md, "pre-nixos.service stays active after success").
package systemd

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// unitService reads the [Service] keys of a systemd unit file (last assignment wins, as
// in systemd for these single-valued keys).
func unitService(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading unit %s: %w", path, err)
	}
	defer f.Close()
	out := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line
		case section == "[Service]":
			if k, v, ok := strings.Cut(line, "="); ok {
				out[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	return out, sc.Err()
}

// systemdBool reads a systemd boolean; ok is false for anything else.
func systemdBool(v string) (b, ok bool) {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true, true
	case "0", "no", "n", "false", "f", "off":
		return false, true
	}
	return false, false
}

// block returns the text between the braces that follow the first match of open in s,
// braces balanced; # comments are blanked first so a brace in a comment does not count.
func block(s string, open *regexp.Regexp) (string, error) {
	s = regexp.MustCompile(`(?m)#.*$`).ReplaceAllString(s, "")
	loc := open.FindStringIndex(s)
	if loc == nil {
		return "", fmt.Errorf("no %s", open)
	}
	start := strings.IndexByte(s[loc[1]-1:], '{') + loc[1] - 1
	depth := 0
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return s[start+1 : i], nil
			}
		}
	}
	return "", fmt.Errorf("unbalanced braces after %s", open)
}

// moduleService reads the pre-nixos unit's serviceConfig from module.nix: the
// attributes this test compares, as Nix writes them.
func moduleService(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	svc, err := block(string(b), regexp.MustCompile(`systemd\.services\.pre-nixos\s*=\s*\{`))
	if err != nil {
		return nil, fmt.Errorf("%s: the pre-nixos unit: %w", path, err)
	}
	sc, err := block(svc, regexp.MustCompile(`serviceConfig\s*=\s*\{`))
	if err != nil {
		return nil, fmt.Errorf("%s: the pre-nixos unit's serviceConfig: %w", path, err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+)\s*=\s*("[^"]*"|true|false)\s*;`).FindAllStringSubmatch(sc, -1) {
		out[m[1]] = strings.Trim(m[2], `"`)
	}
	return out, nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "the repository root (go.mod) is two levels up")
	return root
}

// agreement compares the unit semantics of the NixOS module and each unit file.
func agreement(modulePath string, unitPaths ...string) error {
	mod, err := moduleService(modulePath)
	if err != nil {
		return err
	}
	modRemain, ok := systemdBool(mod["RemainAfterExit"])
	if !ok {
		return fmt.Errorf("%s: the pre-nixos unit's serviceConfig sets no RemainAfterExit (got %q); say it explicitly", modulePath, mod["RemainAfterExit"])
	}
	for _, p := range unitPaths {
		u, err := unitService(p)
		if err != nil {
			return err
		}
		if u["Type"] != mod["Type"] {
			return fmt.Errorf("%s has Type=%s but module.nix has Type = %q", p, u["Type"], mod["Type"])
		}
		remain, ok := systemdBool(u["RemainAfterExit"])
		if !ok {
			return fmt.Errorf("%s: RemainAfterExit=%q is not an explicit systemd boolean", p, u["RemainAfterExit"])
		}
		if remain != modRemain {
			return fmt.Errorf("%s has RemainAfterExit=%s but module.nix has RemainAfterExit = %t: the fixture and NixOS would end pre-nixos.service in different states", p, u["RemainAfterExit"], modRemain)
		}
	}
	return nil
}

// TestUnitAgreesWithModule: the fixture's unit file, the image builder's fallback copy
// and the NixOS module give pre-nixos.service the same type and RemainAfterExit.
func TestUnitAgreesWithModule(t *testing.T) {
	root := repoRoot(t)
	mod := filepath.Join(root, "provisioner", "nixos", "module.nix")
	unit := filepath.Join(root, "provisioner", "systemd", "pre-nixos.service")
	fallback := filepath.Join(root, "artifacts", "images", "fixture", "pre-nixos.service")
	require.NoError(t, agreement(mod, unit, fallback))
	m, err := moduleService(mod)
	require.NoError(t, err)
	require.Equal(t, "oneshot", m["Type"])
	require.Equal(t, "true", m["RemainAfterExit"], "the chosen semantics (docs/decisions.md)")
}

// The comparison notices a drift in either direction, and a module that stops saying.
func TestAgreementFindsDrift(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
		return p
	}
	mod := func(remain string) string {
		return write("module-"+remain+".nix", `{ config, ... }: { config = {
  # a comment with a brace {
  systemd.services.other = { serviceConfig = { RemainAfterExit = false; }; };
  systemd.services.pre-nixos = {
    environment = { A = "b"; };
    serviceConfig = {
      Type = "oneshot";
      `+remain+`
      ExecStart = "${cfg.package}/bin/pre-nixos boot";
    };
  };
}; }`)
	}
	unitNo := write("no.service", "[Unit]\nRemainAfterExit=yes\n[Service]\nType=oneshot\nRemainAfterExit=no\n")
	unitYes := write("yes.service", "[Service]\nType=oneshot\nRemainAfterExit=yes\n")
	unitSimple := write("simple.service", "[Service]\nType=simple\nRemainAfterExit=yes\n")
	unitUnset := write("unset.service", "[Service]\nType=oneshot\n")

	require.NoError(t, agreement(mod("RemainAfterExit = true;"), unitYes))
	require.NoError(t, agreement(mod("RemainAfterExit = false;"), unitNo))
	require.ErrorContains(t, agreement(mod("RemainAfterExit = true;"), unitYes, unitNo), "no.service has RemainAfterExit=no")
	require.ErrorContains(t, agreement(mod("RemainAfterExit = false;"), unitYes), "module.nix has RemainAfterExit = false")
	require.ErrorContains(t, agreement(mod("RemainAfterExit = true;"), unitSimple), "Type=simple")
	require.ErrorContains(t, agreement(mod("RemainAfterExit = true;"), unitUnset), "not an explicit systemd boolean")
	require.ErrorContains(t, agreement(mod(""), unitYes), "sets no RemainAfterExit")
}
