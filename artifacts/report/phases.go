package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// phaseRow is one line of the phase table: the phase that ended at a milestone, its
// length and its share of the time to the last boot milestone. The timeline shows the
// same phases as bars; the table gives the numbers to compare runs by (issue 15).
type phaseRow struct {
	Name, From, At, Took, Share string
}

// bootUnits is systemd's own account, when the evidence has it: the slowest units
// (`systemd-analyze blame`) and the chain that held the boot up (`critical-chain`).
type bootUnits struct {
	Blame, Chain string
}

// Evidence capture names the phase section reads (harness/capture's EvBlame and
// EvCriticalChain; artifacts cannot import the harness).
const (
	evBlame         = "systemd-analyze-blame"
	evCriticalChain = "systemd-analyze-critical-chain"
	unitLines       = 12
)

func phaseTable(ms []runrec.Milestone) []phaseRow {
	if len(ms) == 0 {
		return nil
	}
	// Shares are of the time until the last milestone before shutdown: what a boot took.
	total := 0.0
	for _, m := range ms {
		if !runrec.IsShutdown(m.Name) && m.At.D().Seconds() > total {
			total = m.At.D().Seconds()
		}
	}
	var rows []phaseRow
	prev := "start"
	for _, m := range ms {
		took := m.Duration.D().Seconds()
		r := phaseRow{Name: m.Name, From: prev, At: fmt.Sprintf("%.1f s", m.At.D().Seconds()), Took: fmt.Sprintf("%.1f s", took), Share: "-"}
		if total > 0 && !runrec.IsShutdown(m.Name) {
			r.Share = fmt.Sprintf("%.0f%%", 100*took/total)
		}
		rows = append(rows, r)
		prev = m.Name
	}
	return rows
}

// readBootUnits finds the blame and critical-chain captures under captures/ and keeps
// their first lines.
func readBootUnits(dir string) *bootUnits {
	dirs := captureDirs(dir)
	var u bootUnits
	for _, d := range dirs {
		idx, err := rundiff.ReadCaptureIndex(d)
		if err != nil {
			continue
		}
		for _, c := range idx.Captures {
			if c.File == "" || c.Status != 0 || c.Err != "" {
				continue
			}
			var dst *string
			switch c.Name {
			case evBlame:
				dst = &u.Blame
			case evCriticalChain:
				dst = &u.Chain
			default:
				continue
			}
			if b, err := os.ReadFile(filepath.Join(d, c.File)); err == nil {
				*dst = headLines(string(b), unitLines)
			}
		}
	}
	if u.Blame == "" && u.Chain == "" {
		return nil
	}
	return &u
}

func headLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("... (%d more lines)", len(lines)-n))
	}
	return strings.Join(lines, "\n")
}
