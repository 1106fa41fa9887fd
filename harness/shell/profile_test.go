package shell

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// imageLiterals returns the string literals in the scenario sources that spell out an
// image-specific name (a unit, a key path, a poweroff command) of any built-in profile,
// as "file:line: literal (the profile field's value)".
func imageLiterals(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no Go files in %s", dir)
	var names, commands []string
	for _, p := range Builtin() {
		names = append(names, p.ImageNames()...)
		if p.Poweroff != "" {
			commands = append(commands, p.Poweroff)
		}
	}
	names, commands = unique(names), unique(commands)
	var bad []string
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		require.NoError(t, err, "parsing %s", f)
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			require.NoError(t, err)
			for _, name := range names {
				if strings.Contains(s, name) {
					bad = append(bad, fset.Position(lit.Pos()).String()+": "+lit.Value+" names "+name)
				}
			}
			// Commands only as a whole: "poweroff" is also part of "poweroff -f", a
			// kernel-specific choice some scenarios make on purpose.
			for _, c := range commands {
				if strings.TrimSpace(s) == c {
					bad = append(bad, fset.Position(lit.Pos()).String()+": "+lit.Value+" is a profile's poweroff command")
				}
			}
			return true
		})
	}
	return bad
}

// TestScenariosTakeImageNamesFromProfile keeps the scenario suite image-neutral: a
// scenario that spells out ssh.service, sshd.service, pre-nixos.service or a key path
// instead of taking it from the image's profile would fail on the other image
// (`go test ./scenarios -profile nixos -iso X`).
func TestScenariosTakeImageNamesFromProfile(t *testing.T) {
	bad := imageLiterals(t, filepath.Join("..", "..", "scenarios"))
	require.Empty(t, bad, "scenarios must take image-specific names from the profile (shell.Profile), not spell them out")
}

// The scan itself finds what it is meant to find: a scenario-like file naming Debian's
// and NixOS's sshd units and a key path.
func TestImageLiteralScanFindsNames(t *testing.T) {
	dir := t.TempDir()
	src := "package scenarios\n\nvar a = \"systemctl is-active ssh.service\"\nvar b = `systemctl show sshd.service`\nvar c = \"cat /root/.ssh/authorized_keys\"\nvar d = \"root_key.pub\"\nvar e = \"systemctl poweroff\"\nvar ok = \"poweroff -f\"\n"
	require.NoError(t, writeFile(filepath.Join(dir, "x_test.go"), src))
	bad := imageLiterals(t, dir)
	require.Len(t, bad, 5, "%v", bad)
	joined := strings.Join(bad, "\n")
	for _, want := range []string{"ssh.service", "sshd.service", "/root/.ssh/authorized_keys", "root_key.pub", "poweroff command"} {
		require.Contains(t, joined, want)
	}
}

func TestBuiltinProfiles(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Builtin() {
		require.NoError(t, p.Validate(), p.Name)
		require.False(t, seen[p.Name], "duplicate profile name %s", p.Name)
		seen[p.Name] = true
		q, err := ByName(p.Name)
		require.NoError(t, err)
		require.Equal(t, p.Name, q.Name)
	}
	_, err := ByName("debian")
	require.ErrorContains(t, err, "known: mini, fixture, nixos, debian-installer")

	// The two images that run pre-nixos differ where Debian and NixOS differ, and
	// agree where the provisioner decides.
	require.Equal(t, "ssh.service", Fixture.SSHUnit)
	require.Equal(t, "sshd.service", NixOS.SSHUnit)
	for _, p := range []Profile{Fixture, NixOS} {
		require.Equal(t, "pre-nixos.service", p.PreNixosUnit)
		require.Equal(t, "active", p.PreNixosDone, "RemainAfterExit=yes on both (docs/decisions.md)")
		require.NotEmpty(t, p.GuestKey)
		require.NotEmpty(t, p.AuthorizedKeys)
		require.NotEmpty(t, p.HostKey)
		require.NotNil(t, p.ISOKey)
		require.False(t, p.IgnoresACPIPowerdown, "systemd powers off on the ACPI button")
	}
	require.True(t, Mini.IgnoresACPIPowerdown, "busybox init ignores the ACPI button")
	require.Empty(t, Mini.SSHUnit)

	// Where the key is on each ISO, as isoinspect reports it (layer:path).
	require.Regexp(t, Fixture.ISOKey, "live/filesystem.squashfs:etc/pre-nixos/root_key.pub")
	require.NotRegexp(t, Fixture.ISOKey, ":pre_nixos/root_key.pub")
	require.Regexp(t, NixOS.ISOKey, "nix-store.squashfs:0123456789abcdfghijklmnpqrsvwxyz-etc-root_key.pub")
	require.Regexp(t, NixOS.ISOKey, "nix-store.squashfs:0123456789abcdfghijklmnpqrsvwxyz-etc/etc/pre-nixos/root_key.pub")
	// The form isoinspect reports for a NixOS ISO (artifacts/isoinspect TestInspectNixOSISOLayout): the
	// key as the booted system toplevel sees it.
	require.Regexp(t, NixOS.ISOKey, "nix-store.squashfs:0123456789abcdfghijklmnpqrsvwxyz-nixos-system-nixos-25.11pre/etc/pre-nixos/root_key.pub")

	require.Equal(t, "systemctl poweroff", NixOS.PoweroffCommand(""))
	require.Equal(t, "poweroff -f", NixOS.PoweroffCommand("poweroff -f"))
	require.Equal(t, "poweroff", (&Profile{}).PoweroffCommand(""))
	require.Equal(t, DefaultBootPhases, Fixture.Phases())
	var names []string
	for _, ph := range NixOS.Phases() {
		names = append(names, ph.Name)
	}
	require.Equal(t, []string{"kernel", "stage1", "stage2", "init"}, names)
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

func unique(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// TestPreNixosDoneMatchesUnitFile: the state the profiles expect after success is the
// one the fixture's unit file produces (active with RemainAfterExit=yes, inactive
// without); provisioner/systemd's test keeps module.nix in step with that file.
func TestPreNixosDoneMatchesUnitFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "provisioner", "systemd", "pre-nixos.service"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^RemainAfterExit=(\S+)`).FindStringSubmatch(string(b))
	require.NotNil(t, m, "the unit file says RemainAfterExit explicitly")
	want := "inactive"
	if m[1] == "yes" || m[1] == "true" {
		want = "active"
	}
	for _, p := range []Profile{Fixture, NixOS} {
		require.Equal(t, want, p.PreNixosDone, "profile %s vs RemainAfterExit=%s", p.Name, m[1])
	}
}
