package rundiff

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// Promoted is where Promote put a run's serial log and test report.
type Promoted struct {
	BootLog, TestReport string
}

// Promote copies run's serial log into docsDir/boot-logs and writes a markdown test
// report into docsDir/test-reports, both named by the run's start time and slug
// (2026-12-02T05-01-02Z-fixture.log / .md), so promoted runs sort by time next to each
// other. base, if not empty, is the run to diff against (the last pass). Promoting the
// same run again replaces its two files.
func Promote(runDir, docsDir, base string) (Promoted, error) {
	var p Promoted
	r, err := Load(runDir)
	if err != nil {
		return p, err
	}
	name := r.Meta.Started.UTC().Format(runrec.TimeLayout) + "-" + runrec.SanitizeSlug(r.Meta.Slug)
	logs, reports := filepath.Join(docsDir, "boot-logs"), filepath.Join(docsDir, "test-reports")
	for _, d := range []string{logs, reports} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return p, fmt.Errorf("promoting %s: %w", runDir, err)
		}
	}
	p.BootLog = filepath.Join(logs, name+".log")
	if err := copyFile(filepath.Join(r.Info.Dir, runrec.SerialLog), p.BootLog); err != nil {
		return p, fmt.Errorf("promoting %s: copying the serial log: %w", runDir, err)
	}
	var d *Diff
	if base != "" {
		b, err := Load(base)
		if err != nil {
			return p, fmt.Errorf("promoting %s: %w", runDir, err)
		}
		d = Compare(b, r, Options{})
	}
	rel, _ := filepath.Rel(reports, p.BootLog)
	md := TestReport(r, d, filepath.ToSlash(rel))
	p.TestReport = filepath.Join(reports, name+".md")
	if err := atomicfile.Write(p.TestReport, []byte(md), 0o644); err != nil {
		return p, fmt.Errorf("promoting %s: %w", runDir, err)
	}
	return p, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.WriteWith(dst, 0o644, func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	})
}

// keyLines caps each capture quoted in a test report: the report is read on a web
// page; the whole capture is in the run directory.
const keyLines = 40

// TestReport is the markdown test report of a run: outcome, milestones, failures, key
// captures and the diff against the last pass (d may be nil: no passing run known).
func TestReport(r *Run, d *Diff, bootLog string) string {
	m := r.Meta
	var b strings.Builder
	fmt.Fprintf(&b, "# Test report: %s, %s\n\n", m.Slug, m.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(&b, "- Outcome: **%s**\n", m.Outcome)
	if m.Error != "" {
		fmt.Fprintf(&b, "- Error: %s\n", oneLine(m.Error))
	}
	if m.Ended != nil {
		fmt.Fprintf(&b, "- Duration: %.1f s\n", m.Ended.Sub(m.Started).Seconds())
	}
	fmt.Fprintf(&b, "- Image: `%s`", m.Image.Path)
	if m.Image.SHA256 != "" {
		fmt.Fprintf(&b, " (sha256 `%.16s…`)", m.Image.SHA256)
	}
	b.WriteString("\n")
	if m.Accel.Name != "" {
		fmt.Fprintf(&b, "- Accelerator: %s\n", m.Accel.Name)
	}
	fmt.Fprintf(&b, "- bootlab: `%s`\n- Run directory: `%s`\n", m.BootlabVersion, r.Info.Dir)
	if bootLog != "" {
		fmt.Fprintf(&b, "- Serial log: [%s](%s)\n", filepath.Base(bootLog), bootLog)
	}
	b.WriteString("\n## Milestones\n\n")
	if len(m.Milestones) == 0 {
		b.WriteString("None reached.\n")
	} else {
		b.WriteString("| milestone | at | phase |\n|---|---:|---:|\n")
		for _, ms := range m.Milestones {
			fmt.Fprintf(&b, "| %s | %.1f s | %.1f s |\n", ms.Name, ms.At.D().Seconds(), ms.Duration.D().Seconds())
		}
	}
	b.WriteString("\n## Failures\n\n")
	var fails []string
	for _, s := range m.Scenarios {
		if s.Outcome != runrec.Pass {
			fails = append(fails, fmt.Sprintf("- scenario %s: %s %s", s.Name, s.Outcome, oneLine(s.Error)))
		}
	}
	if f := strings.TrimSpace(r.Captures[capFailed]); f != "" {
		fails = append(fails, "- failed units:")
		for _, l := range strings.Split(f, "\n") {
			fails = append(fails, "  - `"+strings.TrimSpace(l)+"`")
		}
	}
	diags, _ := filepath.Glob(filepath.Join(r.Info.Dir, runrec.DiagnosticsDir, "*.txt"))
	sort.Strings(diags)
	for _, p := range diags {
		fails = append(fails, "- diagnostic `"+runrec.DiagnosticsDir+"/"+filepath.Base(p)+"`")
	}
	if len(fails) == 0 {
		b.WriteString("None.\n")
	} else {
		b.WriteString(strings.Join(fails, "\n") + "\n")
	}
	b.WriteString("\n## Key captures\n\n")
	if !r.Info.Evidence {
		b.WriteString("The run has no boot evidence (captures/boot).\n")
	}
	for _, c := range []struct{ name, title string }{
		{capKernel, "Kernel"}, {capCmdline, "Kernel command line"},
		{capJournalW, "Journal, warnings and worse"}, {"systemd-analyze-critical-chain", "Critical chain"},
		{capPNFiles, "pre-nixos status files"},
	} {
		v := strings.TrimSpace(r.Captures[c.name])
		if v == "" {
			continue
		}
		ls := strings.Split(v, "\n")
		note := ""
		if len(ls) > keyLines {
			note = fmt.Sprintf(" (first %d of %d lines)", keyLines, len(ls))
			ls = ls[:keyLines]
		}
		fmt.Fprintf(&b, "### %s%s\n\n```\n%s\n```\n\n", c.title, note, strings.Join(ls, "\n"))
	}
	b.WriteString("## Compared with the last pass\n\n")
	if d == nil {
		b.WriteString("No earlier passing run of this image or scenario was found.\n")
	} else {
		fmt.Fprintf(&b, "```\n%s```\n", d.Text())
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
