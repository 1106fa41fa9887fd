package report

import (
	"fmt"
	"html/template"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// captureRow is one line of the captures table, read from the index.json files the
// capture package writes: what ran, its exit status, size and how long it took, so the
// cost of evidence is visible next to the evidence.
type captureRow struct {
	Dir, Set, Name, Label, Command string
	Status                         string
	Size, Time, Why                string
	Href                           template.URL
	Class                          string
}

// captureTable reads every captures/**/index.json, in directory order then capture
// order, and totals the time and bytes.
func captureTable(dir string) (rows []captureRow, total string) {
	dirs := captureDirs(dir)
	var sum time.Duration
	var bytes int64
	for _, d := range dirs {
		idx, err := rundiff.ReadCaptureIndex(d)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(dir, d)
		rel = filepath.ToSlash(rel)
		for _, c := range idx.Captures {
			r := captureRow{Dir: rel, Set: c.Set, Name: c.Name, Label: c.Label, Command: c.Command,
				Status: fmt.Sprint(c.Status), Size: "-", Time: "-"}
			switch {
			case c.Note != "":
				r.Status, r.Why, r.Class = "n/a", c.Note, "muted"
			case c.Skipped:
				r.Status, r.Why, r.Class = "skipped", c.Err, "warn"
			case c.Err != "":
				r.Status, r.Why, r.Class = "-", c.Err, "fail"
			case c.Status != 0:
				r.Class = "warn"
			}
			if !c.Skipped {
				r.Time = c.Duration().Round(time.Millisecond).String()
				r.Size = fmtSize(int64(c.Size))
				sum += c.Duration()
				bytes += int64(c.Size)
			}
			if c.File != "" {
				r.Href = relHref(rel + "/" + c.File)
			}
			rows = append(rows, r)
		}
	}
	if len(rows) > 0 {
		total = fmt.Sprintf("%d captures, %s in %s", len(rows), fmtSize(bytes), sum.Round(time.Millisecond))
	}
	return rows, total
}

// diffSection is the run's diff against the last passing run (diff.json), if Close
// found one.
type diffSection struct {
	Against string
	Empty   bool
	Text    string
}

func readDiff(dir string) *diffSection {
	d, err := rundiff.ReadJSONFile(filepath.Join(dir, rundiff.DiffFile))
	if err != nil {
		return nil
	}
	return &diffSection{Against: d.A.Dir, Empty: d.Empty(), Text: strings.TrimSpace(d.Text())}
}

// captureDirs are the capture sets of a run (directories under captures/ holding an
// index), sorted so the sets read in the order they were taken.
func captureDirs(dir string) []string {
	root := filepath.Join(dir, runrec.CapturesDir)
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() == rundiff.IndexFile {
			dirs = append(dirs, filepath.Dir(p))
		}
		return nil
	})
	sort.Strings(dirs)
	return dirs
}
