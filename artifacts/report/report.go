// Package report renders a run directory into report.html: one self-contained page
// (inline CSS and SVG, no scripts, no network) that says the verdict, draws the
// milestone timeline, and holds the scenarios, captures, diagnostics and the serial log
// made readable, so a failure can be understood from the CI artefact alone. Trend turns
// the ledger into a chart of boot milestones over runs.
package report

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/ansi"
	"github.com/bootlab/bootlab/artifacts/atomicfile"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// Options tune Render.
type Options struct {
	// Normalise turns raw serial bytes into readable text; nil uses ansi.Normalize, the
	// console's own normaliser (tests replace it).
	Normalise func([]byte) []byte
	// SerialLimit is how many bytes from the end of serial.log are shown (default
	// 256 KiB): a flooding kernel can write hundreds of MiB and the end is where the
	// failure is.
	SerialLimit int64
	// FileLimit caps each capture and diagnostic shown inline (default 64 KiB).
	FileLimit int64
	// Now is the rendering time shown in the footer (default time.Now).
	Now time.Time
}

func (o *Options) defaults() {
	if o.Normalise == nil {
		o.Normalise = ansi.Normalize
	}
	if o.SerialLimit <= 0 {
		o.SerialLimit = 256 << 10
	}
	if o.FileLimit <= 0 {
		o.FileLimit = 64 << 10
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
}

// Render writes <dir>/report.html from the run directory dir and returns its path.
// Missing pieces (no captures, no serial log yet) are shown as absent, not errors: a
// report of a run that died early is the one most needed.
func Render(ctx context.Context, dir string, opts Options) (string, error) {
	var buf bytes.Buffer
	if err := Write(ctx, &buf, dir, opts); err != nil {
		return "", err
	}
	out := filepath.Join(dir, runrec.ReportFile)
	if err := atomicfile.Write(out, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("writing report: %w", err)
	}
	return out, nil
}

// Write renders the report of run directory dir to w.
func Write(ctx context.Context, w io.Writer, dir string, opts Options) error {
	opts.defaults()
	// Settle: a run whose process was killed is reported as abandoned, not running.
	meta, err := runrec.Settle(dir)
	if err != nil {
		return fmt.Errorf("report of %s: %w", dir, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d := pageData{Meta: meta, Dir: dir, Generated: opts.Now.UTC().Format(time.RFC3339)}
	d.Verdict, d.VerdictClass = verdict(meta.Outcome)
	if meta.Ended != nil {
		d.Duration = fmtSec(meta.Ended.Sub(meta.Started))
	}
	d.Timeline = timeline(meta.Milestones)
	d.Phases = phaseTable(meta.Milestones)
	d.BootUnits = readBootUnits(dir)
	d.CaptureIndex, d.Captures = readSection(dir, runrec.CapturesDir, "index.md", opts)
	d.CaptureRows, d.CaptureTotal = captureTable(dir)
	d.Diff = readDiff(dir)
	_, d.Diagnostics = readSection(dir, runrec.DiagnosticsDir, "", opts)
	d.Serial, d.SerialNote = readSerial(filepath.Join(dir, runrec.SerialLog), opts)
	for _, a := range meta.Artefacts {
		d.Artefacts = append(d.Artefacts, artefactRow{Artefact: a, Href: relHref(a.Path), Size: fmtSize(a.Size)})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := pageTmpl.Execute(w, d); err != nil {
		return fmt.Errorf("rendering report: %w", err)
	}
	return nil
}

type pageData struct {
	Meta                  runrec.Metadata
	Dir                   string
	Verdict, VerdictClass string
	Duration              string
	Generated             string
	Timeline              timelineData
	Phases                []phaseRow
	BootUnits             *bootUnits
	CaptureIndex          string
	Captures, Diagnostics []fileBlock
	CaptureRows           []captureRow
	CaptureTotal          string
	Diff                  *diffSection
	Serial, SerialNote    string
	Artefacts             []artefactRow
}

type artefactRow struct {
	runrec.Artefact
	Href template.URL
	Size string
}

type fileBlock struct {
	Name, Body, Note string
}

func verdict(o runrec.Outcome) (string, string) {
	switch o {
	case runrec.Pass:
		return "PASS", "pass"
	case runrec.Fail:
		return "FAIL", "fail"
	case runrec.Bad:
		return "BAD (the predicate judged the image bad)", "fail"
	case runrec.Error:
		return "ERROR", "fail"
	case runrec.Interrupted:
		return "INTERRUPTED", "warn"
	case runrec.Abandoned:
		return "ABANDONED (the bootlab process died without recording a verdict)", "warn"
	case runrec.Running, "":
		return "UNFINISHED (no verdict recorded)", "warn"
	}
	return strings.ToUpper(string(o)), "warn"
}

// relHref makes a link to a file inside the run directory: each path segment is
// escaped, so a file name cannot smuggle a scheme or leave the directory.
func relHref(rel string) template.URL {
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		parts[i] = urlPathEscape(p)
	}
	return template.URL("./" + strings.Join(parts, "/"))
}

func urlPathEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func fmtSec(d time.Duration) string {
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func fmtSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// readSection reads every file under dir/sub (recursively, sorted), returning the
// named index file separately.
func readSection(dir, sub, index string, opts Options) (string, []fileBlock) {
	root := filepath.Join(dir, sub)
	var idx string
	var blocks []fileBlock
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.Name() == "index.json" || (strings.Contains(rel, "/") && d.Name() == "index.md") {
			return nil // shown as the captures table
		}
		body, note := readLimited(p, opts.FileLimit, false)
		body = string(opts.Normalise([]byte(body)))
		if rel == index {
			idx = body
			return nil
		}
		blocks = append(blocks, fileBlock{Name: sub + "/" + rel, Body: body, Note: note})
		return nil
	})
	sort.Slice(blocks, func(i, j int) bool { return blocks[i].Name < blocks[j].Name })
	return idx, blocks
}

// readLimited reads up to limit bytes from the start (or the end, tail=true).
func readLimited(p string, limit int64, tail bool) (string, string) {
	f, err := os.Open(p)
	if err != nil {
		return "", "unreadable: " + err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", "unreadable: " + err.Error()
	}
	size := st.Size()
	n, off := size, int64(0)
	note := ""
	if size > limit {
		n = limit
		if tail {
			off = size - limit
			note = fmt.Sprintf("last %s of %s shown; the full file is %s", fmtSize(limit), fmtSize(size), filepath.Base(p))
		} else {
			note = fmt.Sprintf("first %s of %s shown; the full file is %s", fmtSize(limit), fmtSize(size), filepath.Base(p))
		}
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return "", "unreadable: " + err.Error()
	}
	return string(buf), note
}

func readSerial(p string, opts Options) (string, string) {
	if _, err := os.Stat(p); err != nil {
		return "", "no serial log recorded"
	}
	body, note := readLimited(p, opts.SerialLimit, true)
	return string(opts.Normalise([]byte(body))), note
}

// timelineData is the geometry of the milestone bar chart, computed here so the
// template only places already-escaped values.
type timelineData struct {
	Width, Height int
	Rows          []timelineRow
	Ticks         []tick
	AxisY         int
	Empty         bool
}

type timelineRow struct {
	Name                 string
	Y, TextY             int
	X, W                 float64
	LabelX               float64
	Label, Color         string
	StartLabel, EndLabel string
	// Note says why the phase ended (shutdown stages), listed under the chart.
	Note string
}

type tick struct {
	X     float64
	Label string
}

const (
	tlLeft   = 150
	tlPlot   = 720
	tlRight  = 170
	tlRowH   = 28
	tlTop    = 10
	tlBottom = 34
)

var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

func milestoneColor(name string) string {
	for i, n := range runrec.StandardMilestones {
		if n == name {
			return palette[i%len(palette)]
		}
	}
	h := 0
	for _, c := range name {
		h = h*31 + int(c)
	}
	if h < 0 {
		h = -h
	}
	return palette[h%len(palette)]
}

func timeline(ms []runrec.Milestone) timelineData {
	if len(ms) == 0 {
		return timelineData{Empty: true}
	}
	max := 0.0
	for _, m := range ms {
		max = math.Max(max, m.At.D().Seconds())
	}
	step := niceStep(max / 6)
	span := math.Ceil(max/step) * step
	if span <= 0 {
		span = 1
	}
	scale := tlPlot / span
	td := timelineData{Width: tlLeft + tlPlot + tlRight}
	for i, m := range ms {
		end := m.At.D().Seconds()
		start := math.Max(0, end-m.Duration.D().Seconds())
		y := tlTop + i*tlRowH
		w := math.Max((end-start)*scale, 2) // a zero-length phase stays visible
		td.Rows = append(td.Rows, timelineRow{
			Name: m.Name, Y: y + 4, TextY: y + 18,
			X: tlLeft + start*scale, W: w, LabelX: tlLeft + start*scale + w + 6,
			Label: fmt.Sprintf("%.1f s (+%.1f s)", end, end-start), Color: milestoneColor(m.Name), Note: m.Note,
		})
	}
	td.AxisY = tlTop + len(ms)*tlRowH + 4
	for v := 0.0; v <= span+step/2; v += step {
		td.Ticks = append(td.Ticks, tick{X: tlLeft + v*scale, Label: trimFloat(v) + " s"})
	}
	td.Height = td.AxisY + tlBottom
	return td
}

// niceStep rounds a raw axis step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

//go:embed report.html.tmpl
var pageSrc string

var funcs = template.FuncMap{
	"sec":  func(s runrec.Seconds) string { return fmtSec(s.D()) },
	"size": fmtSize,
	"outcomeClass": func(o runrec.Outcome) string {
		_, c := verdict(o)
		return c
	},
	"utc": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") },
	"f1":  func(v float64) string { return fmt.Sprintf("%.1f", v) },
}

var pageTmpl = template.Must(template.New("report").Funcs(funcs).Parse(pageSrc))
