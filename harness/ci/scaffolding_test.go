package ci

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestScenarioScaffoldingAtMostAFifth keeps scenarios/ about scenarios: of its code
// lines (not blank, not comments, not imports), at most a fifth may be scaffolding, that
// is outside the body of a func TestXxx other than TestMain. Booting, recording and the
// debug keep belong in harness/labtest and the lab; docs/writing-scenarios.md has the
// count.
func TestScenarioScaffoldingAtMostAFifth(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "scenarios", "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	var body, scaffolding int
	for _, f := range files {
		b, s := scenarioLines(t, f)
		body += b
		scaffolding += s
	}
	share := float64(scaffolding) / float64(body+scaffolding)
	t.Logf("scenarios/: %d lines of scenario bodies, %d of scaffolding (%.1f%%)", body, scaffolding, 100*share)
	if share > 0.2 {
		t.Errorf("scaffolding is %.1f%% of scenarios/ (%d of %d lines), more than a fifth: move helpers into harness/labtest or the lab", 100*share, scaffolding, body+scaffolding)
	}
}

// plumbing is a scenario line about mechanics rather than intent: contexts and their
// cancels, error values, deferred calls, t.Helper. labtest.Machine's methods fail the
// test themselves, so a scenario needs none of them.
var plumbing = regexp.MustCompile(`\bctx\b|\bcancel\b|\bcontext\.|\berr\b|\bdefer\b|t\.Helper\(\)`)

// TestEveryScenarioFileIsFourFifthsIntent: in each file with a scenario, at least 80% of
// the code lines (not blank, comments or imports) are intent: inside a scenario's body
// and not plumbing. docs/architecture.md has the counts.
func TestEveryScenarioFileIsFourFifthsIntent(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "scenarios", "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, f := range files {
		body, scaffolding, plumb := scenarioLinesPlumbing(t, f)
		if body == 0 {
			continue // no scenario in it (TestMain, shared helpers)
		}
		total := body + scaffolding
		intent := float64(body-plumb) / float64(total)
		t.Logf("%s: %d code lines, %d in scenario bodies of which %d plumbing: %.0f%% intent", filepath.Base(f), total, body, plumb, 100*intent)
		if intent < 0.8 {
			t.Errorf("%s is %.0f%% intent (%d of %d lines), below 80%%: move the mechanics into harness/labtest (labtest.Machine)", filepath.Base(f), 100*intent, body-plumb, total)
		}
	}
}

// scenarioLines counts a file's code lines inside Test function bodies and outside.
func scenarioLines(t *testing.T, path string) (body, scaffolding int) {
	body, scaffolding, _ = scenarioLinesPlumbing(t, path)
	return body, scaffolding
}

// scenarioLinesPlumbing is scenarioLines and, of the body lines, how many are plumbing.
func scenarioLinesPlumbing(t *testing.T, path string) (body, scaffolding, plumb int) {
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	af, err := parser.ParseFile(fset, path, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	skip := map[int]bool{} // comment and import lines
	for _, cg := range af.Comments {
		for l := fset.Position(cg.Pos()).Line; l <= fset.Position(cg.End()).Line; l++ {
			skip[l] = true
		}
	}
	for _, d := range af.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.IMPORT {
			for l := fset.Position(g.Pos()).Line; l <= fset.Position(g.End()).Line; l++ {
				skip[l] = true
			}
		}
	}
	inTest := map[int]bool{}
	for _, d := range af.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") && fn.Name.Name != "TestMain" {
			for l := fset.Position(fn.Pos()).Line; l <= fset.Position(fn.End()).Line; l++ {
				inTest[l] = true
			}
		}
	}
	for i, line := range strings.Split(string(src), "\n") {
		n := i + 1
		if strings.TrimSpace(line) == "" || skip[n] || n == 1 {
			continue
		}
		if inTest[n] {
			body++
			if plumbing.MatchString(line) {
				plumb++
			}
		} else {
			scaffolding++
		}
	}
	return body, scaffolding, plumb
}
