// Package rundiff compares two run directories: what a passing run and a failing one
// (or two nights, or a bisection's last good and first bad images) did differently.
// It reads metadata.json milestones and the boot evidence captures (captures/boot),
// normalises what changes on every boot (timestamps, PIDs, addresses, UUIDs, MACs,
// random names, hex, durations) and reports only what is left: milestones that moved,
// units that failed, appeared, vanished or got slower, new journal warnings and errors,
// kernel and command-line changes, pre-nixos plan and status changes, and which
// captures changed.
package rundiff

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
)

// IndexFile is the machine-readable capture index written next to index.md in every
// capture directory; reports and diffs read it instead of parsing markdown.
const IndexFile = "index.json"

// EvidenceDir is where, under the run directory, the evidence taken at the end of
// every run (pass or fail) goes; the diff reads captures from here.
const EvidenceDir = "captures/boot"

// CaptureRecord is one capture in index.json.
type CaptureRecord struct {
	Set     string `json:"set"`
	Name    string `json:"name"`
	Label   string `json:"label,omitempty"`
	Command string `json:"command,omitempty"`
	// Status is the command's exit status; -1 when it did not finish or did not run.
	Status int `json:"status"`
	// DurationMS is how long the capture took on the guest's transport.
	DurationMS int64  `json:"duration_ms"`
	File       string `json:"file,omitempty"`
	Size       int    `json:"size"`
	Err        string `json:"error,omitempty"`
	TimedOut   bool   `json:"timed_out,omitempty"`
	Skipped    bool   `json:"skipped,omitempty"`
	// Note says why a capture was not taken although nothing failed: the image has no
	// systemd, or not the tool (a mini image, an installer).
	Note string `json:"note,omitempty"`
	// Taken is when the capture started (UTC).
	Taken time.Time `json:"taken"`
}

// Duration is the capture's duration.
func (c CaptureRecord) Duration() time.Duration {
	return time.Duration(c.DurationMS) * time.Millisecond
}

// CaptureIndex is index.json: every capture taken into one directory, in order.
type CaptureIndex struct {
	Captures []CaptureRecord `json:"captures"`
}

// ReadCaptureIndex reads dir/index.json; a missing file is an empty index.
func ReadCaptureIndex(dir string) (CaptureIndex, error) {
	var idx CaptureIndex
	b, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return idx, fmt.Errorf("reading capture index: %w", err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("parsing %s: %w", filepath.Join(dir, IndexFile), err)
	}
	return idx, nil
}

// AppendCaptureIndex adds records to dir/index.json, replacing the file atomically
// (write to a temporary file, rename) so a reader never sees half an index.
func AppendCaptureIndex(dir string, recs []CaptureRecord) error {
	idx, err := ReadCaptureIndex(dir)
	if err != nil {
		// A corrupt index (a crash mid-write on a filesystem without rename
		// atomicity) must not stop new evidence from being recorded.
		idx = CaptureIndex{}
	}
	idx.Captures = append(idx.Captures, recs...)
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding capture index: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, IndexFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing capture index: %w", err)
	}
	return nil
}
