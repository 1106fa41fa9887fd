package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The flake cannot be evaluated without nixpkgs, so these checks read its
// normalised parse tree: they pin what a user's `nix build` depends on and
// what the nightly's `nix build .#bootImage` and the scenarios on its ISO expect.
func TestFlakeShape(t *testing.T) {
	root := repoRoot(t)
	src := nixParse(t, filepath.Join(root, "flake.nix"))

	for _, want := range []string{
		"packages = ", "nixosModules = ", "devShells = ", "checks = ",
		"bootImage = (bootImageSystem).config.system.build.isoImage;",
		"/nixos/modules/installer/cd-dvd/installation-cd-minimal.nix",
		"/provisioner/nixos/module.nix",
		`getEnv "PRE_NIXOS_ROOT_KEY"`,
		"services = { pre-nixos = { enable = true;",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("flake.nix lacks %q", want)
		}
	}

	// Every subPackages entry must be a real package directory; a rename
	// under provisioner/cmd or harness/cmd would otherwise surface only in
	// a user's nix build.
	lists := regexp.MustCompile(`subPackages = \[([^\]]*)\]`).FindAllStringSubmatch(src, -1)
	var pkgs []string
	for _, l := range lists {
		for _, m := range regexp.MustCompile(`"([^"]+)"`).FindAllStringSubmatch(l[1], -1) {
			pkgs = append(pkgs, m[1])
		}
	}
	for _, want := range []string{"provisioner/cmd/pre-nixos", "provisioner/cmd/pre-nixos-detect-storage", "provisioner/cmd/pre-nixos-console", "harness/cmd/bootlab"} {
		found := false
		for _, p := range pkgs {
			found = found || p == want
		}
		if !found {
			t.Errorf("flake.nix does not build %s (subPackages: %v)", want, pkgs)
		}
	}
	for _, p := range pkgs {
		if !dirExists(filepath.Join(root, p)) {
			t.Errorf("flake.nix subPackages names %s, which is not a directory in the repository", p)
		}
	}

	// pre-nixos runs on the Debian fixture ISO too, so it must be static.
	pre := nixBinding(t, src, "preNixosFor")
	if !strings.Contains(pre, `pname = "pre-nixos"`) {
		t.Fatalf("preNixosFor does not build pname pre-nixos:\n%s", pre)
	}
	if !strings.Contains(pre, `env = { CGO_ENABLED = "0"; }`) {
		t.Error(`the pre-nixos package must set env.CGO_ENABLED = "0" (static binaries)`)
	}
	// Run by hand, pre-nixos must find the storage tools the service has.
	if !strings.Contains(pre, `wrapProgram \$out/bin/\$prog --prefix PATH : " + ((lib).makeBinPath storageTools)`) {
		t.Error("the pre-nixos package no longer wraps its commands with storageTools on PATH")
	}
	tools := nixBinding(t, pre, "storageTools")
	for _, tool := range []string{"disko", "gptfdisk", "mdadm", "lvm2", "util-linux", "kmod"} {
		if !strings.Contains(tools, "("+tool+")") {
			t.Errorf("storageTools (the pre-nixos wrapper PATH) lacks %s: %s", tool, tools)
		}
	}
}

// TestFlakeChecksAndDevShell pins what issue 14 asked of the flake: checks
// run only what the build sandbox can (no VM package, no harness/ci), the
// devShell exports the names the code reads and has the tools the image
// builders call.
func TestFlakeChecksAndDevShell(t *testing.T) {
	root := repoRoot(t)
	src := nixParse(t, filepath.Join(root, "flake.nix"))
	checks := nixBinding(t, src, "checks")
	if !strings.Contains(checks, "make sandbox-unit") {
		t.Errorf("checks.unit does not run make sandbox-unit (the sandbox-safe unit packages):\n%s", checks)
	}
	if !strings.Contains(checks, "nix-instantiate --parse") {
		t.Error("the flake's checks do not parse the .nix files")
	}
	for _, bad := range []string{"go list", "go test"} {
		if strings.Contains(checks, bad) {
			t.Errorf("the flake's checks run %q with their own package list; they call make sandbox-unit", bad)
		}
	}
	dev := nixBinding(t, src, "devShells")
	if strings.Contains(dev, "BOOTLAB_CACHE_DIR") || !strings.Contains(dev, `export BOOTLAB_CACHE=`) {
		t.Error("the devShell must export BOOTLAB_CACHE, the name artifacts/images reads")
	}
	for _, tool := range []string{"qemu", "apt", "dpkg", "mmdebstrap", "squashfsTools", "xorriso", "cpio", "pkgsStatic.busybox", "syslinux", "gnumake", "actionlint", "shellcheck"} {
		if !strings.Contains(dev, "("+tool+")") && !strings.Contains(dev, tool+")") {
			t.Errorf("the devShell lacks %s, which make or the image builders call", tool)
		}
	}

	// The sandbox package set must hold no VM package and nothing that needs git
	// or the network.
	cmd := exec.Command("make", "-n", "sandbox-unit")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make -n sandbox-unit: %v", err)
	}
	if !strings.Contains(string(out), "/provisioner/planner") {
		t.Fatalf("make -n sandbox-unit lists no unit packages:\n%s", out)
	}
	for _, vm := range []string{"/scenarios", "/harness/vmtest", "/harness/faults", "/harness/bisect/vmprobe", "/artifacts/images", "/harness/cmd/bootlab", "/harness/ci", "/artifacts/report"} {
		if strings.Contains(string(out), vm+" ") || strings.HasSuffix(strings.TrimSpace(string(out)), vm) {
			t.Errorf("make sandbox-unit runs %s, which cannot run in the Nix build sandbox", vm)
		}
	}
}

// nixBinding returns the expression bound to name ("name = <expr>;") in
// nix-instantiate --parse output, found by balancing brackets outside
// strings. The parse output sorts bindings, so slicing between two
// neighbouring names would pick up the wrong expression.
func nixBinding(t *testing.T, src, name string) string {
	t.Helper()
	i := strings.Index(src, " "+name+" = ")
	if i < 0 {
		t.Fatalf("no binding %s in the parsed flake", name)
	}
	i += len(name) + 4
	depth, inStr := 0, false
	for j := i; j < len(src); j++ {
		c := src[j]
		switch {
		case inStr && c == '\\':
			j++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		case c == ';' && depth == 0:
			return src[i:j]
		}
	}
	t.Fatalf("binding %s never ends", name)
	return ""
}

// flake.nix's vendorHash and the parse check of every .nix file are not
// tested here: the ci.yml nix job runs them (make nixcheck), and the
// workflow runner (TestWorkflowsRunHere) runs that job in make test.

func TestNixParseCheckRejectsBrokenFiles(t *testing.T) {
	requireTool(t, "nix-instantiate", installNix)
	requireTool(t, "git", "apt-get install git")
	// A scratch repository, so the shared checkout never sees the bad file.
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join(repoRoot(t), ".ci", "nix-parse-check.sh"))
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, ".ci"), 0o755))
	must(os.WriteFile(filepath.Join(dir, ".ci", "nix-parse-check.sh"), script, 0o755))
	must(os.WriteFile(filepath.Join(dir, "good.nix"), []byte("{ a = 1; }\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "bad.nix"), []byte("{ a = ; }\n"), 0o644))
	git := exec.Command("git", "init", "-q")
	git.Dir = dir
	if out, err := git.CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}

	cmd := exec.Command("bash", ".ci/nix-parse-check.sh")
	cmd.Dir = dir
	cmd.Env = nixEnv(t)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("nix-parse-check passed a file with a syntax error:\n%s", out)
	}
	if !strings.Contains(string(out), "FAIL bad.nix") || strings.Contains(string(out), "FAIL good.nix") {
		t.Errorf("nix-parse-check must name exactly the broken file:\n%s", out)
	}
}
