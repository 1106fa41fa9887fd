package rundiff

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bootlab/bootlab/artifacts/runrec"
)

// NoDifferences is what the text form says when the diff is empty.
const NoDifferences = "no differences"

// Text renders the diff for a terminal (and the markdown test reports: every line is
// also valid markdown inside a list).
func (d *Diff) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "A: %s (%s)\nB: %s (%s)\n", d.A.Dir, d.A.Outcome, d.B.Dir, d.B.Outcome)
	for _, n := range d.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	// The predicate decided a bisection: it comes first, step by step, even when it
	// agrees, then the boot evidence.
	d.Predicate.text(&b)
	if d.Empty() {
		b.WriteString(NoDifferences + "\n")
		return b.String()
	}
	if d.Outcome != nil {
		fmt.Fprintf(&b, "outcome: %s -> %s\n", d.Outcome.A, d.Outcome.B)
	}
	if d.Predicate != nil {
		b.WriteString("boot evidence:\n")
		if d.bootEmpty() {
			b.WriteString("  the same in both runs\n")
		}
	}
	if len(d.Milestones) > 0 {
		b.WriteString("milestones:\n")
		for _, m := range d.Milestones {
			switch {
			case m.AtA == nil:
				fmt.Fprintf(&b, "  %-16s only in B, at %.1fs\n", m.Name, *m.AtB)
			case m.AtB == nil:
				fmt.Fprintf(&b, "  %-16s only in A, at %.1fs (not reached in B)\n", m.Name, *m.AtA)
			default:
				fmt.Fprintf(&b, "  %-16s phase %.1fs -> %.1fs (%+.1fs), at %.1fs -> %.1fs\n", m.Name, *m.PhaseA, *m.PhaseB, *m.PhaseB-*m.PhaseA, *m.AtA, *m.AtB)
			}
		}
	}
	list := func(title string, items []string) {
		if len(items) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", title, strings.Join(items, ", "))
		}
	}
	list("units failed", d.Units.Failed)
	list("units no longer failed", d.Units.Recovered)
	list("units appeared", d.Units.Appeared)
	list("units vanished", d.Units.Vanished)
	if len(d.Units.Slower) > 0 {
		b.WriteString("units slower (blame):\n")
		for _, s := range d.Units.Slower {
			fmt.Fprintf(&b, "  %s %.1fs -> %.1fs\n", s.Unit, s.A, s.B)
		}
	}
	if len(d.Journal) > 0 {
		fmt.Fprintf(&b, "new journal warnings and errors (%d):\n", len(d.Journal))
		for _, j := range d.Journal {
			n := ""
			if j.Count > 1 {
				n = fmt.Sprintf(" (x%d)", j.Count)
			}
			fmt.Fprintf(&b, "  %s%s\n", j.Example, n)
		}
	}
	if d.Kernel != nil {
		fmt.Fprintf(&b, "kernel: %s -> %s\n", d.Kernel.A, d.Kernel.B)
	}
	if d.Cmdline != nil {
		fmt.Fprintf(&b, "cmdline:\n  A: %s\n  B: %s\n", d.Cmdline.A, d.Cmdline.B)
	}
	lines := func(title string, ls []string) {
		if len(ls) > 0 {
			fmt.Fprintf(&b, "%s:\n", title)
			for _, l := range ls {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
	}
	lines("pre-nixos plan", d.PreNixosPlan)
	lines("pre-nixos status", d.PreNixosStatus)
	list("captures changed", d.Captures.Changed)
	list("captures only in A", d.Captures.OnlyA)
	list("captures only in B", d.Captures.OnlyB)
	return b.String()
}

func (p *Predicate) text(b *strings.Builder) {
	if p == nil {
		return
	}
	what := ""
	for _, v := range []*runrec.Verdict{p.A, p.B} {
		if v != nil && v.Predicate != "" {
			what = " (" + v.Predicate + ")"
			break
		}
	}
	fmt.Fprintf(b, "predicate%s: A %s, B %s\n", what, verdictOf(p.A), verdictOf(p.B))
	for _, side := range []struct {
		name string
		v    *runrec.Verdict
	}{{"A", p.A}, {"B", p.B}} {
		if side.v != nil && side.v.Reason != "" {
			fmt.Fprintf(b, "  %s: %s\n", side.name, side.v.Reason)
		}
	}
	for _, s := range p.Steps {
		mark := "  "
		if s.Differs {
			mark = "! "
		}
		fmt.Fprintf(b, "%s%s\n", mark, s.Step)
		fmt.Fprintf(b, "    A: %s\n", stepText(s.A))
		fmt.Fprintf(b, "    B: %s\n", stepText(s.B))
	}
	if !p.Differs() {
		b.WriteString("  (the same in both runs)\n")
	}
}

func stepText(s *runrec.PredicateStep) string {
	if s == nil {
		return "(no such step)"
	}
	out := s.Result
	if s.ExitStatus != nil {
		out += fmt.Sprintf(", exit %d", *s.ExitStatus)
	}
	if s.Output != "" {
		o := s.Output
		if len(o) > 300 {
			o = o[:300] + "..."
		}
		out += fmt.Sprintf(", output %q", o)
	}
	if s.Detail != "" {
		out += ": " + s.Detail
	}
	return out
}

// WriteText prints Text to w.
func (d *Diff) WriteText(w io.Writer) error {
	_, err := io.WriteString(w, d.Text())
	return err
}

// LastPass returns the run directory of the newest passing run in the ledger with the
// same slug (an image name for bootlab run, a scenario for the suite) that started
// before the run in exclude and still exists; "" when there is none.
//
// A ledger records each run at the path it was written to, which need not be where
// the run is now: a CI job's notes travel as an artefact to another machine, shards'
// notes are merged into one directory, and runs of earlier nights are kept beside
// their ledger. So a recorded directory that is gone is looked for by its name next to
// the ledger and next to exclude (resolveRun).
func LastPass(ledger, slug, exclude string) (string, error) {
	entries, _, err := runrec.ReadLedger(ledger)
	if err != nil {
		return "", err
	}
	excl, _ := filepath.Abs(exclude)
	roots := []string{filepath.Dir(ledger), filepath.Dir(excl)}
	var before runrec.LedgerEntry
	for _, e := range entries {
		if resolveRun(e.Dir, roots) == excl {
			before = e
		}
	}
	best := ""
	var bestEntry runrec.LedgerEntry
	for _, e := range entries {
		if e.Outcome != runrec.Pass || e.Slug != slug {
			continue
		}
		dir := resolveRun(e.Dir, roots)
		if dir == "" || dir == excl {
			continue // pruned or moved out of reach
		}
		if !before.Time.IsZero() && !e.Time.Before(before.Time) {
			continue
		}
		if best == "" || e.Time.After(bestEntry.Time) {
			best, bestEntry = dir, e
		}
	}
	return best, nil
}

// resolveRun is where the run a ledger recorded at dir is now: dir itself when it is
// still a run directory, else a run directory of the same name in one of roots, else "".
func resolveRun(dir string, roots []string) string {
	isRun := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, runrec.MetadataFile))
		return err == nil
	}
	if dir == "" {
		return ""
	}
	if isRun(dir) {
		return dir
	}
	for _, r := range roots {
		abs, err := filepath.Abs(filepath.Join(r, filepath.Base(dir)))
		if err == nil && isRun(abs) {
			return abs
		}
	}
	return ""
}
