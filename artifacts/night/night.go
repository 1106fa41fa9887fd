// Package night writes the part of a nightly CI summary that explains a red night:
// for each run that did not pass, what changed since that scenario's last pass
// (rundiff: units, journal lines, milestones) and where its run directory is; and the
// nights so far, each marked red or green.
//
// Runs of earlier nights are not in tonight's notes. The report job keeps them in a
// history directory that rides in the CI cache from night to night (History):
//
//	ledger.jsonl   every run of every night (.ci/merge-notes.sh appends tonight's)
//	nights.jsonl   one line per night: its id, time, red or green, what failed
//	<run dir>/     the newest passing run of each slug, without disk images, so the
//	               next night has something to diff against (KeepPasses)
package night

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// NightsFile is the history directory's list of nights.
const NightsFile = "nights.jsonl"

// Outcomes of a night.
const (
	Red   = "red"
	Green = "green"
)

// Options says where tonight's runs and the history are, and how to name tonight.
type Options struct {
	Notes    string    // tonight's notes: its run directories (the shards merged)
	History  string    // earlier nights: ledger.jsonl, nights.jsonl, kept passes
	ID       string    // this night's id (the workflow run id)
	Artifact string    // the artefact that carries Notes, e.g. work-notes-merged
	Link     string    // where that artefact can be fetched (the run's page)
	Now      time.Time // when the night is recorded (default time.Now)
	Nights   int       // nights listed, newest first (default 14)
}

// Night is one line of nights.jsonl.
type Night struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Outcome string    `json:"outcome"` // Red or Green
	Runs    int       `json:"runs"`
	Failed  []string  `json:"failed,omitempty"` // the failing scenarios (or run slugs)
	Link    string    `json:"link,omitempty"`
}

type run struct {
	dir  string
	meta runrec.Metadata
}

// failing names what failed in a run: its failing scenarios, else its slug.
func (r run) failing() []string {
	var out []string
	for _, s := range r.meta.Scenarios {
		if s.Outcome != runrec.Pass {
			out = append(out, s.Name)
		}
	}
	if len(out) == 0 {
		out = append(out, r.meta.Slug)
	}
	return out
}

// Report writes tonight's explanation and the nights to w (Markdown for a job
// summary), records tonight in History/nights.jsonl and keeps tonight's passes in
// History for the next night. It returns tonight's record.
func Report(ctx context.Context, w io.Writer, o Options) (Night, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Nights <= 0 {
		o.Nights = 14
	}
	runs, err := readRuns(o.Notes)
	if err != nil {
		return Night{}, err
	}
	tonight := Night{ID: o.ID, Time: o.Now.UTC(), Outcome: Green, Runs: len(runs), Link: o.Link}
	var bad []run
	for _, r := range runs {
		if r.meta.Outcome != runrec.Pass {
			bad = append(bad, r)
			tonight.Failed = append(tonight.Failed, r.failing()...)
		}
	}
	if len(bad) > 0 || len(runs) == 0 {
		tonight.Outcome = Red // a night that ran nothing is not green either
	}
	if err := explain(ctx, w, o, runs, bad); err != nil {
		return tonight, err
	}
	nights, err := recordNight(o.History, tonight)
	if err != nil {
		return tonight, err
	}
	writeNights(w, nights, o.Nights)
	if err := KeepPasses(o.Notes, o.History); err != nil {
		return tonight, err
	}
	return tonight, nil
}

// readRuns lists the run directories directly under notes, oldest first.
func readRuns(notes string) ([]run, error) {
	ents, err := os.ReadDir(notes)
	if err != nil {
		return nil, fmt.Errorf("reading tonight's notes: %w", err)
	}
	var runs []run
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(notes, e.Name())
		if _, err := os.Stat(filepath.Join(dir, runrec.MetadataFile)); err != nil {
			continue // not a run directory (trend assets, a probe's scratch)
		}
		m, err := runrec.Settle(dir) // a killed run counts as abandoned, not as running
		if err != nil {
			return nil, fmt.Errorf("reading run %s: %w", dir, err)
		}
		runs = append(runs, run{dir, m})
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].meta.Started.Before(runs[j].meta.Started) })
	return runs, nil
}

// ledger is the ledger that knows earlier nights: the history's, which
// .ci/merge-notes.sh rewrote with tonight's lines appended; else tonight's.
func ledger(o Options) string {
	if o.History != "" {
		if _, err := os.Stat(runrec.DefaultLedger(o.History)); err == nil {
			return runrec.DefaultLedger(o.History)
		}
	}
	return runrec.DefaultLedger(o.Notes)
}

// fence is a Markdown code fence no diff line can close early.
const fence = "~~~~~~"

func explain(ctx context.Context, w io.Writer, o Options, runs, bad []run) error {
	switch {
	case len(runs) == 0:
		fmt.Fprintf(w, "## Tonight: red\n\nNo run directory in the notes: the scenarios left no records.\n\n")
		return nil
	case len(bad) == 0:
		fmt.Fprintf(w, "## Tonight: green\n\nAll %d runs passed.\n\n", len(runs))
		return nil
	}
	fmt.Fprintf(w, "## Tonight: red\n\n%d of %d runs did not pass. For each, what changed since its scenario last passed (`bootlab diff --against-last-pass`):\n\n", len(bad), len(runs))
	led := ledger(o)
	for _, r := range bad {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := filepath.Base(r.dir)
		fmt.Fprintf(w, "### %s: %s\n\n", strings.Join(r.failing(), ", "), r.meta.Outcome)
		where := fmt.Sprintf("`%s`", o.Artifact)
		if o.Link != "" {
			where = fmt.Sprintf("[`%s`](%s)", o.Artifact, o.Link)
		}
		if o.Artifact == "" {
			where = "tonight's notes"
		}
		fmt.Fprintf(w, "Run directory `%s` (slug `%s`) in the artefact %s: report.html, serial.log, the captures.\n\n", name, r.meta.Slug, where)
		if r.meta.Error != "" {
			fmt.Fprintf(w, "Error: %s\n\n", firstLine(r.meta.Error))
		}
		last, err := rundiff.LastPass(led, r.meta.Slug, r.dir)
		if err != nil {
			return fmt.Errorf("finding the last pass of %s: %w", r.meta.Slug, err)
		}
		if last == "" {
			fmt.Fprintf(w, "No earlier passing run of `%s` in the ledger (%s): nothing to compare with.\n\n", r.meta.Slug, led)
			continue
		}
		d, err := rundiff.CompareDirs(last, r.dir, rundiff.Options{})
		if err != nil {
			return fmt.Errorf("comparing %s with its last pass: %w", name, err)
		}
		fmt.Fprintf(w, "Compared with the last pass `%s`:\n\n%s\n%s%s\n\n", filepath.Base(last), fence, d.Text(), fence)
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// recordNight puts tonight into history's nights.jsonl (replacing a line of the same
// id, so a re-run report does not count the night twice) and returns every night.
func recordNight(history string, tonight Night) ([]Night, error) {
	var nights []Night
	if history == "" {
		return []Night{tonight}, nil
	}
	path := filepath.Join(history, NightsFile)
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading the nights so far: %w", err)
	default:
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var n Night
			if json.Unmarshal(sc.Bytes(), &n) == nil && n.ID != "" && n.ID != tonight.ID {
				nights = append(nights, n) // a torn line loses one night, not the list
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
	}
	nights = append(nights, tonight)
	var b strings.Builder
	for _, n := range nights {
		line, err := json.Marshal(n)
		if err != nil {
			return nil, err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.MkdirAll(history, 0o755); err != nil {
		return nil, fmt.Errorf("history directory: %w", err)
	}
	if err := atomicfile.Write(path, []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("recording tonight in %s: %w", path, err)
	}
	return nights, nil
}

func writeNights(w io.Writer, nights []Night, max int) {
	sorted := append([]Night(nil), nights...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Time.After(sorted[j].Time) })
	if len(sorted) > max {
		sorted = sorted[:max]
	}
	fmt.Fprintf(w, "## Nights\n\n| night | result | runs | not passing |\n|---|---|---|---|\n")
	for _, n := range sorted {
		mark := "🟢 green"
		if n.Outcome == Red {
			mark = "🔴 red"
		}
		id := n.ID
		if n.Link != "" {
			id = fmt.Sprintf("[%s](%s)", n.ID, n.Link)
		}
		fmt.Fprintf(w, "| %s %s | %s | %d | %s |\n", n.Time.UTC().Format("2006-01-02 15:04"), id, mark, n.Runs, strings.Join(n.Failed, ", "))
	}
	fmt.Fprintln(w)
}

// KeepPasses copies the newest passing run of each slug in notes into history (disk
// images left out) and removes the older kept run of that slug, so the history holds
// one last pass per slug and the next night can diff against it. A slug that did not
// pass tonight keeps its older pass.
func KeepPasses(notes, history string) error {
	if history == "" {
		return nil
	}
	runs, err := readRuns(notes)
	if err != nil {
		return err
	}
	newest := map[string]run{}
	for _, r := range runs {
		if r.meta.Outcome == runrec.Pass && !r.meta.Started.Before(newest[r.meta.Slug].meta.Started) {
			newest[r.meta.Slug] = r
		}
	}
	if len(newest) == 0 {
		return nil
	}
	kept, err := readRuns(history)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, k := range kept {
		if n, ok := newest[k.meta.Slug]; ok && filepath.Base(k.dir) != filepath.Base(n.dir) {
			if err := os.RemoveAll(k.dir); err != nil {
				return fmt.Errorf("removing the older kept pass %s: %w", k.dir, err)
			}
		}
	}
	for _, r := range newest {
		dst := filepath.Join(history, filepath.Base(r.dir))
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		if err := copyRun(r.dir, dst); err != nil {
			return fmt.Errorf("keeping %s as the last pass of %s: %w", r.dir, r.meta.Slug, err)
		}
	}
	return nil
}

// diskImage: what a kept run leaves out (the CI uploads exclude the same).
func diskImage(name string) bool {
	for _, ext := range []string{".img", ".qcow2", ".raw", ".iso"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

func copyRun(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case !d.Type().IsRegular() || diskImage(d.Name()):
			return nil // sockets of a debug session, disk images
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
