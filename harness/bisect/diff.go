package bisect

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// RunDiff is what changed between the last good candidate's run and the first bad
// one's: the evidence a person reads right after the answer.
type RunDiff struct {
	Good string        `json:"good_run"`
	Bad  string        `json:"bad_run"`
	Diff *rundiff.Diff `json:"diff,omitempty"`
	// Note says why there is no diff (a predicate without run directories, a run
	// pruned since).
	Note string `json:"note,omitempty"`
}

// runOf is the run directory of a probe of candidate i with verdict v (the latest
// attempt), or "".
func (r *Result) runOf(i int, v Verdict) string {
	dir := ""
	for _, p := range r.Probes {
		if p.Index == i && p.Verdict == v && p.RunDir != "" {
			dir = linkDir(r.Dir, p.RunDir)
		}
	}
	return dir
}

// diffBoundary fills r.RunDiff from the last good and first bad candidates' runs. Only
// a bisection that has both ends has a boundary to explain.
func (r *Result) diffBoundary() {
	bad := r.FirstBad
	if bad < 0 {
		bad = r.FirstKnownBad
	}
	if r.LastGood < 0 || bad < 0 {
		return
	}
	rd := &RunDiff{Good: r.runOf(r.LastGood, Good), Bad: r.runOf(bad, Bad)}
	r.RunDiff = rd
	for _, d := range []string{rd.Good, rd.Bad} {
		if d == "" {
			rd.Note = "no run directory recorded for the last good or first bad probe"
			return
		}
		if _, err := os.Stat(filepath.Join(d, runrec.MetadataFile)); err != nil {
			rd.Note = fmt.Sprintf("%s is not a run directory (the predicate keeps no run records, or it was pruned)", d)
			return
		}
	}
	d, err := rundiff.CompareDirs(rd.Good, rd.Bad, rundiff.Options{})
	if err != nil {
		rd.Note = err.Error()
		return
	}
	rd.Diff = d
}

// diffText is the boundary diff for the text report.
func (r *Result) diffText() string {
	rd := r.RunDiff
	if rd == nil {
		return ""
	}
	if rd.Diff == nil {
		return "diff of last good and first bad runs: " + rd.Note + "\n"
	}
	return "diff of last good and first bad runs (bootlab diff " + rd.Good + " " + rd.Bad + "):\n" + rd.Diff.Text()
}
