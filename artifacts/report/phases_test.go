package report

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// The report says where the boot time went: each phase with its length and share, and
// systemd's slowest units and critical chain from the evidence (issue 15).
func TestRenderPhaseTableAndBootUnits(t *testing.T) {
	r, err := runrec.Create(t.TempDir(), "fixture", t0)
	require.NoError(t, err)
	for _, m := range []struct {
		n string
		s float64
	}{{"spawn", 0.5}, {"first_output", 2}, {"kernel", 6}, {"init", 40}, {"login_prompt", 79}, {"root_shell", 80}, {"shutdown", 95}} {
		require.NoError(t, r.Milestone(m.n, t0.Add(time.Duration(m.s*float64(time.Second)))))
	}
	dir := r.Path(rundiff.EvidenceDir)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	var blame strings.Builder
	for i := 0; i < 30; i++ {
		blame.WriteString("  1.5s unit-" + string(rune('a'+i%26)) + ".service\n")
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "blame.txt"), []byte("12.345s lvm2-monitor.service\n"+blame.String()), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chain.txt"), []byte("graphical.target @38.1s\n└─multi-user.target @38.0s\n  └─getty.target <script>\n"), 0o644))
	require.NoError(t, rundiff.AppendCaptureIndex(dir, []rundiff.CaptureRecord{
		{Set: "boot", Name: evBlame, Command: "systemd-analyze blame", File: "blame.txt", Size: 900},
		{Set: "boot", Name: evCriticalChain, Command: "systemd-analyze critical-chain", File: "chain.txt", Size: 90},
	}))
	require.NoError(t, r.Finish(runrec.Pass, "", t0.Add(2*time.Minute)))

	out, err := Render(context.Background(), r.Dir, Options{Now: t0})
	require.NoError(t, err)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	html := string(b)
	for _, want := range []string{
		"Where the boot time went",
		// init -> login_prompt: 39 s of the 80 s to the root shell.
		`<td class="mono">login_prompt</td><td class="mono">init</td><td>79.0 s</td><td>39.0 s</td><td>49%</td>`,
		`<td class="mono">kernel</td><td class="mono">first_output</td><td>6.0 s</td><td>4.0 s</td><td>5%</td>`,
		"12.345s lvm2-monitor.service", "(19 more lines)",
		"└─multi-user.target @38.0s", "getty.target &lt;script&gt;",
	} {
		require.Contains(t, html, want)
	}
	require.NotContains(t, html, "<script>")
}
