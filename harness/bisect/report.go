package bisect

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
)

// WriteTextReport prints the answer, the warnings and every probe with its
// duration and run directory.
func WriteTextReport(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "bisect %s: %s\n", r.Status, r.Message)
	for _, warn := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", warn)
	}
	fmt.Fprintf(&b, "%d probes in %d rounds", len(r.Probes), r.Rounds)
	if r.FlakeRate > 0 || len(r.FlakyCandidates) > 0 {
		fmt.Fprintf(&b, ", measured flake rate %.1f%%", 100*r.FlakeRate)
	}
	b.WriteString("\n")
	for _, p := range r.Probes {
		resumed := ""
		if p.Resumed {
			resumed = " (from log)"
		}
		reason := ""
		if p.Reason != "" {
			reason = "  " + p.Reason
		}
		fmt.Fprintf(&b, "  round %2d  %-4s %-24s attempt %d  %8s  %s%s%s\n", p.Round, p.Verdict, p.Name,
			p.Attempt, p.Duration.Round(time.Millisecond), linkDir(r.Dir, p.RunDir), resumed, reason)
	}
	b.WriteString(r.diffText())
	if r.Dir != "" {
		fmt.Fprintf(&b, "log: %s  report: %s  result: %s\n", filepath.Join(r.Dir, LogName),
			filepath.Join(r.Dir, "report.html"), filepath.Join(r.Dir, "result.json"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func linkDir(dir, runDir string) string {
	if runDir == "" || filepath.IsAbs(runDir) || dir == "" {
		return runDir
	}
	return filepath.Join(dir, runDir)
}

// Replay prints the decision trail of the bisection in dir from its log
// alone, without probing: what was probed in which round, what each probe
// said, what was concluded, and the final answer if there is one.
func Replay(w io.Writer, dir string) error {
	evs, torn, err := ReadLogFile(dir)
	if err != nil {
		return err
	}
	if len(evs) == 0 {
		return fmt.Errorf("%s: %w", dir, errNoStart)
	}
	var b strings.Builder
	st := evs[0]
	names := make([]string, len(st.Candidates))
	for i, c := range st.Candidates {
		names[i] = c.Name
	}
	fmt.Fprintf(&b, "%s start: %d candidates (%s), parallel %d, retries %d",
		st.Time.Format(time.RFC3339), len(names), strings.Join(names, " "), max(st.Parallel, 1), st.Retries)
	if st.Predicate != nil {
		fmt.Fprintf(&b, ", predicate %s", describePredicate(st.Predicate))
	}
	b.WriteString("\n")
	done := false
	for _, ev := range evs[1:] {
		ts := ev.Time.Format("15:04:05")
		switch ev.Event {
		case EventProbeStart:
			fmt.Fprintf(&b, "%s round %d: probing %s (attempt %d) in %s\n", ts, ev.Round, ev.Name, ev.Attempt, ev.RunDir)
		case EventProbeResult:
			fmt.Fprintf(&b, "%s round %d: %s is %s after %s", ts, ev.Round, ev.Name, ev.Verdict,
				(time.Duration(ev.DurationMS) * time.Millisecond).String())
			if ev.Reason != "" {
				fmt.Fprintf(&b, " (%s)", ev.Reason)
			}
			b.WriteString("\n")
		case EventDecision:
			fmt.Fprintf(&b, "%s decision after round %d: %s\n", ts, ev.Round, ev.Message)
		case EventDone:
			done = true
			fmt.Fprintf(&b, "%s done (%s) after %d probes in %d rounds: %s\n", ts, ev.Status, ev.Probes, ev.Rounds, ev.Message)
		}
	}
	if !done {
		b.WriteString("not finished: continue with `bootlab bisect --resume " + dir + "`\n")
	}
	if torn {
		b.WriteString("note: the last log line was torn (interrupted write) and is ignored\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}

func describePredicate(p *Predicate) string {
	switch p.Kind {
	case PredicateScenario:
		return "scenario " + p.Scenario
	case PredicateScript:
		return "script " + p.ScriptPath
	case PredicateCommand:
		return fmt.Sprintf("command %q", p.Command)
	}
	return string(p.Kind)
}

type svgMark struct {
	X, Y        int
	Name, Class string
	Title       string
	First       bool
}

type htmlProbe struct {
	ProbeRecord
	Link     string
	Duration string
}

var reportTmpl = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bootlab bisect: {{.R.Status}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
.good{fill:#2a9d3a;color:#2a9d3a}.bad{fill:#d62828;color:#d62828}.skip{fill:#999;color:#777}.untested{fill:#fff;stroke:#999}
circle{stroke:#333;stroke-width:1}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
.warn{color:#b36b00}
</style></head><body>
<h1>bisect {{.R.Status}}</h1>
<p><strong>{{.R.Message}}</strong></p>
{{range .R.Warnings}}<p class="warn">warning: {{.}}</p>{{end}}
<p>{{len .R.Probes}} probes in {{.R.Rounds}} rounds{{if .Flake}}, measured flake rate {{.Flake}}{{end}}.</p>
<svg width="{{.Width}}" height="{{.Height}}" role="img" aria-label="candidate line">
{{with .Suspects}}<rect x="{{.X}}" y="26" width="{{.W}}" height="28" rx="6" fill="#d62828" fill-opacity="0.15"/><text x="{{.Mid}}" y="16" text-anchor="middle" class="bad">first bad in here</text>{{end}}
<line x1="20" y1="40" x2="{{.LineEnd}}" y2="40" stroke="#333"/>
{{range .Marks}}<g><title>{{.Title}}</title>
{{if .First}}<text x="{{.X}}" y="16" text-anchor="middle" class="bad">first bad</text>{{end}}
<circle cx="{{.X}}" cy="40" r="8" class="{{.Class}}"/>
<text x="{{.X}}" y="{{.Y}}" transform="rotate(60 {{.X}} {{.Y}})" font-size="11">{{.Name}}</text></g>
{{end}}</svg>
<p><span class="good">&#9679; good</span> <span class="bad">&#9679; bad</span> <span class="skip">&#9679; skip (could not be tested)</span> &#9675; not probed</p>
<h2>Probes</h2>
<table><tr><th>round</th><th>candidate</th><th>attempt</th><th>verdict</th><th>duration</th><th>run directory</th><th>reason</th></tr>
{{range .Probes}}<tr><td>{{.Round}}</td><td>{{.Name}}</td><td>{{.Attempt}}</td><td class="{{.Verdict}}">{{.Verdict}}</td><td>{{.Duration}}</td><td><a href="{{.Link}}">{{.RunDir}}</a></td><td>{{.Reason}}</td></tr>
{{end}}</table>
{{with .R.RunDiff}}<h2>Last good vs first bad</h2>
<p>{{.Good}} &rarr; {{.Bad}}</p>
{{if .Diff}}<pre>{{.Diff.Text}}</pre>{{else}}<p class="warn">{{.Note}}</p>{{end}}{{end}}
</body></html>
`))

// WriteHTMLReport writes a self-contained report.html (inline CSS and SVG,
// nothing fetched from the network): the candidate line with good, bad and
// skip marks, the answer, and every probe linked to its run directory.
func WriteHTMLReport(path string, r *Result) error {
	const step = 36
	n := len(r.Candidates)
	data := struct {
		R                      *Result
		Marks                  []svgMark
		Probes                 []htmlProbe
		Width, Height, LineEnd int
		Flake                  string
		Suspects               *struct{ X, W, Mid int }
	}{R: r, Width: 60 + step*max(n, 1), LineEnd: 20 + step*max(n, 1)}
	longest := 0
	for _, c := range r.Candidates {
		longest = max(longest, len(c.Name))
	}
	// Labels are rotated by 60 degrees: about 6 px of height per character.
	data.Height = 80 + 6*longest
	if r.Status == StatusAmbiguous && len(r.Suspects) > 1 {
		first, last := r.Suspects[0], r.Suspects[len(r.Suspects)-1]
		x := 20 + step*first + 2
		w := step*(last-first+1) - 4
		data.Suspects = &struct{ X, W, Mid int }{x, w, x + w/2}
	}
	if r.FlakeRate > 0 {
		data.Flake = fmt.Sprintf("%.1f%%", 100*r.FlakeRate)
	}
	for i, c := range r.Candidates {
		v := Verdict("")
		if i < len(r.Verdicts) {
			v = r.Verdicts[i]
		}
		class := string(v)
		if class == "" {
			class = "untested"
		}
		title := fmt.Sprintf("#%d %s: %s", i, c.Name, class)
		data.Marks = append(data.Marks, svgMark{X: 20 + step*i + step/2, Y: 58, Name: c.Name, Class: class,
			Title: title, First: i == r.FirstBad})
	}
	for _, p := range r.Probes {
		link := p.RunDir
		if filepath.IsAbs(link) {
			link = "file://" + link
		}
		data.Probes = append(data.Probes, htmlProbe{ProbeRecord: p, Link: link, Duration: p.Duration.Round(time.Millisecond).String()})
	}
	var buf bytes.Buffer
	if err := reportTmpl.Execute(&buf, data); err != nil {
		return fmt.Errorf("rendering bisect report: %w", err)
	}
	if err := atomicfile.Write(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing bisect report: %w", err)
	}
	return nil
}
