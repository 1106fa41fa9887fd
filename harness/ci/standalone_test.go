package ci

import (
	"bytes"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// outsideDocPattern matches citations of documents that exist only where bootlab was
// planned, not in a clone: the design notes, the specs of the project bootlab replaced
// and the planning directory beside the repository. A user who reads such a citation has
// nothing to open, so code comments and docs say what they rely on in their own words or
// point into docs/. The pattern is assembled from pieces so this file does not match it.
var outsideDocPattern = strings.Join([]string{
	"DESIGN" + `\.md`,
	"spec" + "/anchors",
	"anchors" + `\.md`,
	"reference" + "-provisioner",
	"reference" + "-harness",
	`\.\.` + "/shared",
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
		"spec" + "/anchors.md section d",
		"(anchors" + ".md, section d)",
		"reference" + "-provisioner.md §10.1",
		"after reference" + "-harness.md Appendix B",
		"see ../" + "shared/spec",
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
