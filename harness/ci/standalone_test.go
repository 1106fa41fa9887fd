package ci

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// outsideDocPattern matches citations of documents that exist only where bootlab was
// planned, not in a clone: the design notes, the specs of the project bootlab replaced
// and the planning directory beside the repository (by relative or absolute path). A
// user who reads such a citation has nothing to open, so code comments and docs say what
// they rely on in their own words or point into docs/. The pattern is assembled from
// pieces so this file does not match it.
var outsideDocPattern = strings.Join([]string{
	"DESIGN" + `\.md`,
	"spec" + "/anchors",
	"anchors" + `\.md`,
	"reference" + "-provisioner",
	"reference" + "-harness",
	`\.\.` + "/shared",
	"/work" + "/shared",
}, "|")

// TestNoCitationsOfOutsideDocuments keeps the repository standing on its own: no tracked
// file may cite a document a clone does not contain. It fails naming each file:line.
func TestNoCitationsOfOutsideDocuments(t *testing.T) {
	git := requireTool(t, "git", "apt-get install git")
	root := repoRoot(t)
	// -I skips binary files (disk images, recorded consoles); the search covers every
	// tracked text file, docs and testdata included.
	cmd := exec.Command(git, "grep", "-nIE", outsideDocPattern)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	switch {
	case err == nil:
		// Matches found.
	case errors.As(err, &exit) && exit.ExitCode() == 1 && stderr.Len() == 0:
		return // git grep's "nothing found"
	default:
		t.Fatalf("git grep in %s: %v\n%s", root, err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	for _, l := range lines {
		t.Errorf("%s", l)
	}
	t.Errorf("%d line(s) cite documents a clone does not have (pattern %q): say what is relied on "+
		"in the repository's own words, or point at docs/architecture.md (layers), "+
		"docs/benchmarks.md (targets) or docs/decisions.md (choices)", len(lines), outsideDocPattern)
}

// TestOutsideDocPatternMatchesCitations proves the pattern is not vacuous (one that
// matches nothing would pass the test above on any repository) and that it leaves
// ordinary words alone. Go's regexp reads this pattern as git grep -E does.
func TestOutsideDocPatternMatchesCitations(t *testing.T) {
	re := regexp.MustCompile(outsideDocPattern)
	for _, cite := range []string{
		"(DESIGN" + ".md section 7)",
		"spec" + "/anchors" + ".md section d",
		"(anchors" + ".md, section d)",
		"reference" + "-provisioner.md §10.1",
		"after reference" + "-harness.md Appendix B",
		"see " + strings.Join([]string{"..", "shared", "spec"}, "/"), // the planning directory beside a clone
		"drawn in /work" + "/shared/data/x.log",
	} {
		if !re.MatchString(cite) {
			t.Errorf("pattern %q does not match the citation %q", outsideDocPattern, cite)
		}
	}
	for _, ok := range []string{
		"a reference-counted buffer",
		"docs/decisions.md",
		"the shared cache under ~/.cache/bootlab",
	} {
		if re.MatchString(ok) {
			t.Errorf("pattern %q matches the ordinary text %q", outsideDocPattern, ok)
		}
	}
}

// TestLicenceAndSecurityPolicyFindable keeps what a stranger needs before using the
// tools: a licence file, named in the README and in the meta of every package the flake
// builds with buildGoModule, and a security policy the README and the provisioner's doc
// link to.
func TestLicenceAndSecurityPolicyFindable(t *testing.T) {
	root := repoRoot(t)
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatalf("reading %s: %v", name, err)
		}
		return string(b)
	}
	if l := read("LICENSE"); !strings.HasPrefix(l, "MIT License\n") || !strings.Contains(l, "The bootlab authors") {
		t.Errorf("LICENSE is not the MIT licence of The bootlab authors:\n%.200s", l)
	}
	readme := read("README.md")
	for _, link := range []string{"(LICENSE)", "(SECURITY.md)"} {
		if !strings.Contains(readme, link) {
			t.Errorf("README.md does not link %s", link)
		}
	}
	if !strings.Contains(read("docs/provisioner.md"), "(../SECURITY.md)") {
		t.Errorf("docs/provisioner.md does not link ../SECURITY.md")
	}
	if s := read("SECURITY.md"); !strings.Contains(s, "Report a vulnerability") {
		t.Errorf("SECURITY.md does not say how to report a problem privately")
	}
	// Each package the flake builds has one meta block; each must name the licence.
	flake := read("flake.nix")
	metas := strings.Count(flake, "meta = {")
	licences := strings.Count(flake, "license = lib.licenses.mit;")
	if metas < 2 || licences != metas {
		t.Errorf("flake.nix: %d meta blocks, %d with license = lib.licenses.mit; every package (pre-nixos, bootlab) needs one", metas, licences)
	}
}
