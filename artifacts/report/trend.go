package report

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// TrendFile reads a ledger and writes the trend page to out (e.g. for
// `bootlab report --trend`). It returns how many ledger lines were unreadable and
// skipped, which the caller should mention.
func TrendFile(ctx context.Context, ledgerPath, out string) (skipped int, err error) {
	entries, skipped, err := runrec.ReadLedger(ledgerPath)
	if err != nil {
		return skipped, err
	}
	if err := ctx.Err(); err != nil {
		return skipped, err
	}
	if err := atomicfile.WriteWith(out, 0o644, func(f *os.File) error { return Trend(f, entries) }); err != nil {
		return skipped, fmt.Errorf("writing trend: %w", err)
	}
	return skipped, nil
}

// Trend writes an HTML page with an SVG line chart of boot milestones over runs (one
// line per milestone, runs in start order) and a table of the same numbers, so a
// slowdown shows as a step in a line.
func Trend(w io.Writer, entries []runrec.LedgerEntry) error {
	d := trendChart(entries)
	if err := trendTmpl.Execute(w, d); err != nil {
		return fmt.Errorf("rendering trend: %w", err)
	}
	return nil
}

type trendData struct {
	Runs                 int
	Width, Height        int
	Left, Right, Top, Y0 int
	Series               []trendSeries
	YTicks, XTicks       []tick
	Markers              []trendMarker
	Table                []trendRow
	Names                []string
}

type trendSeries struct {
	Name, Color string
	Points      string // polyline points
	Dots        []trendDot
	LegendY     int
}

type trendDot struct {
	X, Y  float64
	Title string
}

type trendMarker struct {
	X     float64
	Class string
	Title string
}

type trendRow struct {
	When, Slug string
	Outcome    runrec.Outcome
	Class      string // pass, fail or none (see outcomeClass)
	Cells      []string
}

const (
	trLeft   = 60
	trPlot   = 820
	trRight  = 170
	trTop    = 16
	trPlotH  = 360
	trBottom = 56
)

func trendChart(in []runrec.LedgerEntry) trendData {
	entries := append([]runrec.LedgerEntry(nil), in...)
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Time.Before(entries[j].Time) })
	d := trendData{Runs: len(entries), Width: trLeft + trPlot + trRight, Left: trLeft, Right: trLeft + trPlot, Top: trTop, Y0: trTop + trPlotH}
	d.Height = d.Y0 + trBottom
	d.Names = milestoneNames(entries)
	max := 0.0
	for _, e := range entries {
		for _, v := range e.Milestones {
			max = math.Max(max, v.D().Seconds())
		}
	}
	step := niceStep(max / 5)
	top := math.Ceil(max/step) * step
	if top <= 0 {
		top = 1
	}
	x := func(i int) float64 {
		if len(entries) <= 1 {
			return trLeft + trPlot/2
		}
		return trLeft + float64(i)*trPlot/float64(len(entries)-1)
	}
	y := func(v float64) float64 { return float64(d.Y0) - v/top*trPlotH }
	for v := 0.0; v <= top+step/2; v += step {
		d.YTicks = append(d.YTicks, tick{X: y(v), Label: trimFloat(v) + " s"})
	}
	every := int(math.Ceil(float64(len(entries)) / 8))
	for i, e := range entries {
		last := i == len(entries)-1
		// The newest run always gets a date, unless it would overprint its neighbour.
		if i%max1(every) == 0 || last && (len(d.XTicks) == 0 || x(i)-d.XTicks[len(d.XTicks)-1].X > 90) {
			d.XTicks = append(d.XTicks, tick{X: x(i), Label: e.Time.UTC().Format("01-02 15:04")})
		}
		class := outcomeClass(e.Outcome)
		d.Markers = append(d.Markers, trendMarker{X: x(i), Class: class, Title: fmt.Sprintf("%s %s %s", e.Time.UTC().Format(time.RFC3339), e.Slug, e.Outcome)})
		row := trendRow{When: e.Time.UTC().Format("2006-01-02 15:04:05"), Slug: e.Slug, Outcome: e.Outcome, Class: class}
		if e.FailedStep != "" {
			row.Outcome += runrec.Outcome(" (" + e.FailedStep + ")") // which step made it bad
		}
		for _, n := range d.Names {
			if v, ok := e.Milestones[n]; ok {
				row.Cells = append(row.Cells, fmt.Sprintf("%.1f", v.D().Seconds()))
			} else {
				row.Cells = append(row.Cells, "–")
			}
		}
		d.Table = append(d.Table, row)
	}
	for k, n := range d.Names {
		s := trendSeries{Name: n, Color: milestoneColor(n), LegendY: trTop + 8 + k*20}
		var pts []string
		for i, e := range entries {
			v, ok := e.Milestones[n]
			if !ok {
				continue // a run that never reached it leaves a gap in the dots, the line bridges it
			}
			px, py := x(i), y(v.D().Seconds())
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
			s.Dots = append(s.Dots, trendDot{X: px, Y: py, Title: fmt.Sprintf("%s: %.1f s (%s, %s)", n, v.D().Seconds(), e.Slug, e.Time.UTC().Format(time.RFC3339))})
		}
		s.Points = strings.Join(pts, " ")
		d.Series = append(d.Series, s)
	}
	// Reverse table: newest run first, which is what a reader looks for.
	for i, j := 0, len(d.Table)-1; i < j; i, j = i+1, j-1 {
		d.Table[i], d.Table[j] = d.Table[j], d.Table[i]
	}
	return d
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// milestoneNames lists milestones seen in any entry: standard ones in boot order, then
// the others alphabetically.
func milestoneNames(entries []runrec.LedgerEntry) []string {
	seen := map[string]bool{}
	for _, e := range entries {
		for n := range e.Milestones {
			seen[n] = true
		}
	}
	var out []string
	for _, n := range runrec.StandardMilestones {
		if seen[n] {
			out = append(out, n)
			delete(seen, n)
		}
	}
	var rest []string
	for n := range seen {
		rest = append(rest, n)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

var trendTmpl = template.Must(template.New("trend").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>bootlab boot milestones over {{.Runs}} runs</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;background:#f5f6f8}
h1{font-size:20px}.card{background:#fff;border:1px solid #dde1e7;border-radius:4px;padding:8px;display:inline-block}
svg text{font-size:12px;fill:#1d2330;font-family:system-ui,sans-serif}
.grid{stroke:#e3e6eb}.axis{stroke:#8a93a3}
.m.pass{fill:#2e7d32}.m.fail{fill:#c62828}.m.none{fill:#9e9e9e}
table{border-collapse:collapse;background:#fff;margin-top:16px}th,td{padding:3px 8px;border-bottom:1px solid #e3e6eb;text-align:right}
th{background:#eceff3}td.l,th.l{text-align:left}.fail{color:#c62828}
</style></head><body>
<h1>Boot milestones over {{.Runs}} runs</h1>
{{if not .Runs}}<p>The ledger has no runs yet.</p>{{else}}
<div class="card">
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="boot milestones over runs">
{{range .YTicks}}<line class="grid" x1="{{$.Left}}" x2="{{$.Right}}" y1="{{f1 .X}}" y2="{{f1 .X}}"/><text x="{{$.Left}}" dx="-6" y="{{f1 .X}}" dy="4" text-anchor="end">{{.Label}}</text>
{{end}}
<line class="axis" x1="{{.Left}}" x2="{{.Right}}" y1="{{.Y0}}" y2="{{.Y0}}"/>
{{range .XTicks}}<text x="{{f1 .X}}" y="{{$.Y0}}" dy="32" text-anchor="middle">{{.Label}}</text>
{{end}}
{{range .Markers}}<rect class="m {{.Class}}" x="{{f1 .X}}" y="{{$.Y0}}" transform="translate(-3,6)" width="6" height="8"><title>{{.Title}}</title></rect>
{{end}}
{{range .Series}}<g><polyline points="{{.Points}}" fill="none" stroke="{{.Color}}" stroke-width="2"/>
{{$c := .Color}}{{range .Dots}}<circle cx="{{f1 .X}}" cy="{{f1 .Y}}" r="3" fill="{{$c}}"><title>{{.Title}}</title></circle>{{end}}
<rect x="{{$.Right}}" dx="0" y="{{.LegendY}}" transform="translate(16,-9)" width="14" height="4" fill="{{.Color}}"/><text x="{{$.Right}}" y="{{.LegendY}}" dx="36">{{.Name}}</text></g>
{{end}}
</svg></div>
<p>Seconds from the start of each run to each milestone; runs in start order. Marks under the axis: green passed, red failed, grey no verdict (interrupted, abandoned: the bootlab process died, still running).</p>
<table><tr><th class="l">run started (UTC)</th><th class="l">slug</th><th class="l">outcome</th>{{range .Names}}<th>{{.}}</th>{{end}}</tr>
{{range .Table}}<tr><td class="l">{{.When}}</td><td class="l">{{.Slug}}</td><td class="l {{.Class}}">{{.Outcome}}</td>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
</body></html>
`))

// outcomeClass sorts outcomes for the trend: a run without a verdict (interrupted,
// abandoned because its process died, or still running) is neither a pass nor a
// failure, so it must not make a regression look like one, or hide one.
func outcomeClass(o runrec.Outcome) string {
	switch o {
	case runrec.Pass:
		return "pass"
	case runrec.Fail, runrec.Error, runrec.Bad:
		return "fail"
	}
	return "none"
}
