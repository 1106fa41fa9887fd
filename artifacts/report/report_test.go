package report

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bootlab/bootlab/artifacts/ansi"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

var t0 = time.Date(2026, 11, 23, 1, 2, 3, 0, time.UTC)

// fixtureRun builds a failed run with every section filled, including hostile text
// (markup in the serial log, a scenario name, a file name) that must come out escaped.
func fixtureRun(t *testing.T) *runrec.Run {
	t.Helper()
	r, err := runrec.Create(t.TempDir(), "net <scenario>", t0)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.SetImage(runrec.Image{Path: "/cache/fixture.iso", Kind: "iso", SHA256: strings.Repeat("ab", 32), Size: 300 << 20,
		RootKeyFingerprint: "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}))
	must(r.SetQEMU(runrec.QEMU{Argv: []string{"qemu-system-x86_64", "-m", "1024", "-accel", "tcg"}, Version: "QEMU emulator version 7.2.0", PID: 4242, ExitStatus: "signal: killed"}))
	must(r.SetAccel("tcg", "kvm probe: guest did not reach init in 20 s"))
	for _, m := range []struct {
		n string
		s float64
	}{{"spawn", 0.2}, {"first_output", 1.9}, {"login_prompt", 43.2}, {"root_shell", 43.9}, {"storage_status", 61}, {"ipv4", 70.5}} {
		must(r.Milestone(m.n, t0.Add(time.Duration(m.s*float64(time.Second)))))
	}
	must(r.Scenario(runrec.Scenario{Name: "provisions clean disk", Outcome: runrec.Pass, Duration: runrec.Seconds(20 * time.Second)}))
	must(r.Scenario(runrec.Scenario{Name: "<b>announces</b> ipv4", Outcome: runrec.Fail, Error: "no IPv4 on lan within 120s", Duration: runrec.Seconds(120 * time.Second)}))
	serial := "\x1b[0m\x1b]0;root@host: ~\x07Welcome to \x1b[1;32mDebian\x1b[0m!\r\n<script>alert('serial')</script>\r\nlogin: \x1b[6n\r\n"
	must(os.WriteFile(r.Path(runrec.SerialLog), []byte(serial), 0o644))
	must(os.MkdirAll(r.Path("captures/network"), 0o755))
	must(os.WriteFile(r.Path("captures/index.md"), []byte("# Captures\n\n| command | exit | duration |\n|---|---|---|\n| `ip -o link` | 0 | 0.2 s |\n"), 0o644))
	must(os.WriteFile(r.Path("captures/network/ip-o-link.txt"), []byte("1: lo: <LOOPBACK,UP> mtu 65536\n2: lan: <BROADCAST> mtu 1500 state DOWN\n"), 0o644))
	_, err = r.Diagnostic("ipv4 timeout", runrec.FailureBody(runrec.Failure{Summary: "no IPv4 on lan", QEMUExit: "running", At: t0}))
	must(err)
	must(r.Finish(runrec.Fail, "scenario <b>announces</b> ipv4 failed", t0.Add(130*time.Second)))
	return r
}

func TestRenderStructureAndEscaping(t *testing.T) {
	r := fixtureRun(t)
	path, err := Render(context.Background(), r.Dir, Options{Now: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if path != r.Path(runrec.ReportFile) {
		t.Fatalf("report written to %s", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{
		`<header class="banner fail" id="verdict">`, `<span class="v">FAIL</span>`,
		`<svg xmlns="http://www.w3.org/2000/svg"`, `>login_prompt</text>`, `43.2 s (&#43;41.3 s)`,
		`&lt;b&gt;announces&lt;/b&gt; ipv4`, `no IPv4 on lan within 120s`,
		`&lt;script&gt;alert(&#39;serial&#39;)&lt;/script&gt;`, `Welcome to Debian!`,
		`captures/network/ip-o-link.txt`, `lan: &lt;BROADCAST&gt; mtu 1500`, "| `ip -o link` | 0 |",
		`diagnostics/01-ipv4-timeout.txt`, `Failure: no IPv4 on lan`,
		`kvm probe: guest did not reach init in 20 s`, `SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG`,
		`href="./diagnostics/01-ipv4-timeout.txt"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if n := strings.Count(page, `rx="3" fill=`); n != 6 {
		t.Errorf("timeline has %d bars, want one per milestone (6)", n)
	}
	for _, bad := range []string{"<script", "\x1b", "\a", "root@host", "<b>"} {
		if strings.Contains(page, bad) {
			t.Errorf("report contains %q (unescaped markup or a raw escape)", bad)
		}
	}
	// Self-contained: the only URL is the SVG namespace; no external fetches.
	urls := regexp.MustCompile(`(?i)(?:src|href)\s*=\s*"(https?:)?//`).FindAllString(page, -1)
	if len(urls) != 0 {
		t.Errorf("report references the network: %v", urls)
	}
	if strings.Contains(page, "<link") || strings.Contains(page, "@import") {
		t.Error("report pulls in external resources")
	}
}

func TestRenderUnfinishedRunWithNothing(t *testing.T) {
	r, err := runrec.Create(t.TempDir(), "early death", t0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, r.Dir, Options{}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{"UNFINISHED", "No milestones were recorded", "no serial log recorded", "No captures were taken", "No diagnostics were written"} {
		if !strings.Contains(page, want) {
			t.Errorf("report of an empty run lacks %q", want)
		}
	}
	if err := Write(context.Background(), &buf, t.TempDir(), Options{}); err == nil {
		t.Fatal("a directory without metadata.json must be an error")
	}
}

func TestRenderSerialTailAndNormaliser(t *testing.T) {
	r, err := runrec.Create(t.TempDir(), "big", t0)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("early line\n", 50000) + "THE END\n"
	if err := os.WriteFile(r.Path(runrec.SerialLog), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	called := false
	var buf bytes.Buffer
	err = Write(context.Background(), &buf, r.Dir, Options{SerialLimit: 4096, Normalise: func(b []byte) []byte {
		called = true
		return bytes.ToUpper(b)
	}})
	if err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if !called || !strings.Contains(page, "THE END") || !strings.Contains(page, "EARLY LINE") || strings.Count(page, "EARLY LINE") > 4096/11+1 {
		t.Fatalf("serial tail not limited/normalised (count %d)", strings.Count(page, "EARLY LINE"))
	}
	if !strings.Contains(page, "last 4.0 KiB of") {
		t.Fatal("truncation not announced")
	}
}

// The page's serial log goes through the console's normaliser (artifacts/ansi), not a
// second stripper: titles, colours, DCS and charset switches are gone, CR LF is LF.
func TestSerialLogNormalisedByConsoleNormaliser(t *testing.T) {
	r, err := runrec.Create(t.TempDir(), "ansi", t0)
	if err != nil {
		t.Fatal(err)
	}
	raw := "\x1b]0;root@host: ~\x07# \x1b[1;31mred\x1b[0m \x1b[?2004h\r\n\x1bPdcs body\x1b\\ok \x1b(0lqk\x1b(B\r\n50%\r100%\n"
	if err := os.WriteFile(r.Path(runrec.SerialLog), []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, r.Dir, Options{}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	want := html.EscapeString(string(ansi.Normalize([]byte(raw))))
	if want != html.EscapeString("# red \nok lqk\n50%\n100%\n") {
		t.Fatalf("normaliser changed: %q", want)
	}
	if !strings.Contains(page, want) {
		t.Fatalf("serial log not normalised by artifacts/ansi; want %q in the page", want)
	}
}

func TestTrend(t *testing.T) {
	var entries []runrec.LedgerEntry
	for i := 0; i < 12; i++ {
		login := 43.0 + float64(i%3)
		if i >= 8 {
			login += 20 // the regression the chart must show
		}
		e := runrec.LedgerEntry{
			Time: t0.Add(time.Duration(i) * time.Hour), Slug: fmt.Sprintf("nightly-%d", i), Outcome: runrec.Pass,
			Milestones: map[string]runrec.Seconds{
				"spawn":        runrec.Seconds(200 * time.Millisecond),
				"login_prompt": runrec.Seconds(time.Duration(login * float64(time.Second))),
				"root_shell":   runrec.Seconds(time.Duration((login + 0.8) * float64(time.Second))),
			},
		}
		if i == 10 {
			e.Outcome = runrec.Fail
			e.Milestones["<custom>"] = runrec.Seconds(5 * time.Second)
			delete(e.Milestones, "root_shell")
		}
		entries = append(entries, e)
	}
	// Out of order on purpose: the chart orders by time.
	entries[0], entries[5] = entries[5], entries[0]
	var buf bytes.Buffer
	if err := Trend(&buf, entries); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if n := strings.Count(page, "<polyline"); n != 4 {
		t.Fatalf("%d lines, want one per milestone (4)", n)
	}
	if n := strings.Count(page, "<circle"); n != 12+12+11+1 {
		t.Fatalf("%d points, want 36", n)
	}
	if !strings.Contains(page, "&lt;custom&gt;") || strings.Contains(page, "<custom>") {
		t.Fatal("milestone names not escaped")
	}
	if strings.Count(page, `class="m fail"`) != 1 || strings.Count(page, `class="m pass"`) != 11 {
		t.Fatal("outcome markers wrong")
	}
	// Legend in boot order: spawn before login_prompt before root_shell before custom.
	iS, iL, iR, iC := strings.Index(page, ">spawn</text>"), strings.Index(page, ">login_prompt</text>"), strings.Index(page, ">root_shell</text>"), strings.Index(page, ">&lt;custom&gt;</text>")
	if !(iS >= 0 && iS < iL && iL < iR && iR < iC) {
		t.Fatalf("legend order wrong: %d %d %d %d", iS, iL, iR, iC)
	}
	// Newest first in the table.
	if strings.Index(page, "nightly-11") > strings.Index(page, "nightly-0<") {
		t.Fatal("table is not newest first")
	}
	var empty bytes.Buffer
	if err := Trend(&empty, nil); err != nil || !strings.Contains(empty.String(), "no runs yet") {
		t.Fatalf("empty ledger: %v", err)
	}
}

func TestTrendFileFromLedger(t *testing.T) {
	dir := t.TempDir()
	ledger := filepath.Join(dir, "ledger.jsonl")
	for i := 0; i < 3; i++ {
		if err := runrec.AppendLedger(ledger, runrec.LedgerEntry{Time: t0.Add(time.Duration(i) * time.Minute), Slug: "r", Outcome: runrec.Pass,
			Milestones: map[string]runrec.Seconds{"login_prompt": runrec.Seconds(time.Duration(40+i) * time.Second)}}); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(ledger, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("{broken\n")
	f.Close()
	out := filepath.Join(dir, "trend.html")
	skipped, err := TrendFile(context.Background(), ledger, out)
	if err != nil || skipped != 1 {
		t.Fatalf("skipped %d err %v", skipped, err)
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), "over 3 runs") || strings.Count(string(b), "<circle") != 3 {
		t.Fatalf("trend page wrong:\n%s", b)
	}
}

// The report as a person sees it: Chromium renders it, and the screenshot must show
// the red verdict banner at the top and the coloured timeline bars below.
func TestReportRendersInChromium(t *testing.T) {
	r := fixtureRun(t)
	path, err := Render(context.Background(), r.Dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	png := r.Path("report.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := Screenshot(ctx, path, png); err != nil {
		t.Fatalf("%v (install the Debian package chromium: make deps)", err)
	}
	img := decodePNG(t, png)
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 900 {
		t.Fatalf("screenshot is %v, want 1200x900", b)
	}
	if !near(img, 20, 20, 0xc6, 0x28, 0x28) {
		t.Fatalf("verdict banner is not red at (20,20): %v", img.At(20, 20))
	}
	// The timeline bars are drawn in their palette colours.
	colours := map[[3]uint8]bool{}
	for y := 0; y < 900; y += 3 {
		for x := 0; x < 1200; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}] = true
		}
	}
	for _, c := range [][3]uint8{{0x59, 0xa1, 0x4f}, {0x76, 0xb7, 0xb2}} { // login_prompt and storage_status: wide bars
		if !colours[c] {
			t.Errorf("timeline bar colour %x not on screen", c)
		}
	}
	if len(colours) < 50 {
		t.Fatalf("screenshot has only %d colours: blank page?", len(colours))
	}
	if os.Getenv("REPORT_KEEP") != "" {
		_ = os.WriteFile(os.Getenv("REPORT_KEEP"), mustRead(t, png), 0o644)
	}
}

func TestTrendRendersInChromium(t *testing.T) {
	dir := t.TempDir()
	var entries []runrec.LedgerEntry
	for i := 0; i < 20; i++ {
		entries = append(entries, runrec.LedgerEntry{Time: t0.Add(time.Duration(i) * time.Hour), Slug: "n", Outcome: runrec.Pass,
			Milestones: map[string]runrec.Seconds{"spawn": runrec.Seconds(time.Second), "login_prompt": runrec.Seconds(time.Duration(40+i/10*15) * time.Second)}})
	}
	var buf bytes.Buffer
	if err := Trend(&buf, entries); err != nil {
		t.Fatal(err)
	}
	html := filepath.Join(dir, "trend.html")
	if err := os.WriteFile(html, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	png := filepath.Join(dir, "trend.png")
	if err := Screenshot(ctx, html, png); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, png)
	found := false
	for y := 0; y < 450 && !found; y++ {
		for x := 60; x < 880; x++ {
			if near(img, x, y, 0x59, 0xa1, 0x4f) { // login_prompt's palette colour
				found = true
				break
			}
		}
	}
	if !found {
		t.Fatal("login_prompt line not drawn")
	}
	if os.Getenv("TREND_KEEP") != "" {
		_ = os.WriteFile(os.Getenv("TREND_KEEP"), mustRead(t, png), 0o644)
	}
}

func TestScreenshotMissingFile(t *testing.T) {
	err := Screenshot(context.Background(), filepath.Join(t.TempDir(), "nope.html"), filepath.Join(t.TempDir(), "x.png"))
	if err == nil {
		t.Fatal("want an error for a missing page")
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodePNG(t *testing.T, p string) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(mustRead(t, p)))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	return img
}

func near(img image.Image, x, y int, r8, g8, b8 uint8) bool {
	r, g, b, _ := img.At(x, y).RGBA()
	d := func(a uint32, b uint8) int {
		v := int(a>>8) - int(b)
		if v < 0 {
			v = -v
		}
		return v
	}
	return d(r, r8) < 12 && d(g, g8) < 12 && d(b, b8) < 12
}

// Issue 18: a run whose bootlab process was killed is reported as abandoned, not as
// still running, and the report's own read settles its metadata.
func TestRenderAbandonedRun(t *testing.T) {
	r, err := runrec.Create(t.TempDir(), "killed", t0)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	// A pid beyond pid_max: no such process, as after a SIGKILL.
	if err := r.Update(func(m *runrec.Metadata) { m.Owner = &runrec.Owner{PID: 1 << 30, StartTicks: 1, Hostname: host} }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, r.Dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if page := buf.String(); !strings.Contains(page, "ABANDONED") || strings.Contains(page, "UNFINISHED") {
		t.Fatalf("killed run not reported as abandoned:\n%.2000s", page)
	}
	if m, err := runrec.ReadMetadata(r.Dir); err != nil || m.Outcome != runrec.Abandoned {
		t.Fatalf("metadata after the report: %v %v", m.Outcome, err)
	}
}

// Runs without a verdict (abandoned, interrupted) are neither passes nor failures in
// the trend.
func TestTrendRunsWithoutVerdictAreNeither(t *testing.T) {
	var entries []runrec.LedgerEntry
	for i, o := range []runrec.Outcome{runrec.Pass, runrec.Fail, runrec.Abandoned, runrec.Interrupted, runrec.Error} {
		entries = append(entries, runrec.LedgerEntry{Time: t0.Add(time.Duration(i) * time.Minute), Slug: string(o), Outcome: o,
			Milestones: map[string]runrec.Seconds{"login_prompt": runrec.Seconds(40 * time.Second)}})
	}
	var buf bytes.Buffer
	if err := Trend(&buf, entries); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if p, f, n := strings.Count(page, `class="m pass"`), strings.Count(page, `class="m fail"`), strings.Count(page, `class="m none"`); p != 1 || f != 2 || n != 2 {
		t.Fatalf("markers pass=%d fail=%d none=%d, want 1 2 2", p, f, n)
	}
	if !strings.Contains(page, `<td class="l none">abandoned</td>`) {
		t.Fatal("abandoned row not marked as without verdict")
	}
}
