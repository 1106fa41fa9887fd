package lab

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/harness/capture"
)

// CaptureMode says when Close takes the boot evidence (capture.EvidenceSet).
type CaptureMode string

const (
	// CapturesAlways takes evidence on every run: a passing run is what a failing one
	// is compared with.
	CapturesAlways CaptureMode = "always"
	// CapturesFailure takes it only when the run failed.
	CapturesFailure CaptureMode = "failure"
	// CapturesNone never takes it (wait diagnostics are still captured on failure).
	CapturesNone CaptureMode = "none"
)

// ParseCaptureMode checks a --captures / -captures value; empty means always.
func ParseCaptureMode(s string) (CaptureMode, error) {
	switch CaptureMode(s) {
	case "", CapturesAlways:
		return CapturesAlways, nil
	case CapturesFailure, CapturesNone:
		return CaptureMode(s), nil
	}
	return "", fmt.Errorf("captures must be always, failure or none, not %q", s)
}

// evidenceTimeout bounds the whole evidence capture at Close: a wedged guest must not
// hold up the teardown for the sum of every item's timeout.
const evidenceTimeout = 4 * time.Minute

// Evidence takes the boot evidence into captures/boot now, replacing any taken before,
// and records its duration as the "captures" span. A test that changes the guest on
// purpose calls it before the change is undone; Close calls it unless the mode says not.
func (l *Lab) Evidence(ctx context.Context) (capture.Index, error) {
	if l.vm.Shell() == nil || !l.vm.Running() {
		return capture.Index{}, errors.New("taking boot evidence: no running guest with a shell")
	}
	start := time.Now()
	idx, err := capture.Evidence(ctx, l, l.rec.Path(rundiff.EvidenceDir))
	_ = l.rec.Span("captures", start, time.Now())
	l.mu.Lock()
	l.evidenceTaken = true
	l.mu.Unlock()
	if err != nil {
		return idx, fmt.Errorf("taking boot evidence: %w", err)
	}
	return idx, nil
}

// closeEvidence takes the evidence before the VM stops, if the mode asks for it and
// the guest can still answer. Failures here are logged, never the run's verdict.
func (l *Lab) closeEvidence(ctx context.Context, verdict error) {
	mode := l.cfg.Captures
	if mode == "" {
		mode = CapturesAlways
	}
	l.mu.Lock()
	taken := l.evidenceTaken
	l.mu.Unlock()
	switch {
	case taken, mode == CapturesNone, mode == CapturesFailure && verdict == nil:
		return
	case ctx.Err() != nil, l.vm.Shell() == nil, !l.vm.Running():
		return
	}
	// Half of what is left at most: stopping the VM politely needs the rest.
	budget := evidenceTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl)/2 < budget {
		budget = time.Until(dl) / 2
	}
	cctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	if _, err := l.Evidence(cctx); err != nil {
		l.log.Warn("lab.evidence_incomplete", "error", err.Error())
	}
}

// writeDiff compares this run with the newest earlier passing run of the same slug in
// the ledger and writes diff.json for report.html; without such a run nothing is
// written. Errors are logged: a diff is an aid, not part of the verdict.
func (l *Lab) writeDiff(ledger string) {
	if ledger == "-" {
		return
	}
	m := l.rec.Metadata()
	base, err := rundiff.LastPass(ledger, m.Slug, l.rec.Dir)
	if err != nil || base == "" {
		if err != nil {
			l.log.Warn("lab.diff", "error", err.Error())
		}
		return
	}
	d, err := rundiff.CompareDirs(base, l.rec.Dir, rundiff.Options{})
	if err != nil {
		l.log.Warn("lab.diff", "error", err.Error())
		return
	}
	if err := d.WriteJSONFile(filepath.Join(l.rec.Dir, rundiff.DiffFile)); err != nil {
		l.log.Warn("lab.diff", "error", err.Error())
	}
}
