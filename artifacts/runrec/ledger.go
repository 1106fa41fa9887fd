package runrec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LedgerEntry is one line of ledger.jsonl: enough to plot boot timings over runs and
// find the run directory, not a copy of metadata.json. Readers must tolerate unknown
// and missing keys (older and newer bootlab versions share a ledger).
type LedgerEntry struct {
	Time    time.Time `json:"time"` // run start, UTC
	Dir     string    `json:"dir"`
	Slug    string    `json:"slug"`
	Outcome Outcome   `json:"outcome"`
	Error   string    `json:"error,omitempty"`
	// Duration of the whole run.
	Duration       Seconds `json:"duration"`
	Image          string  `json:"image,omitempty"`
	ImageSHA256    string  `json:"image_sha256,omitempty"`
	Accel          string  `json:"accel,omitempty"`
	BootlabVersion string  `json:"bootlab_version,omitempty"`
	Host           string  `json:"host,omitempty"`
	// Milestones maps milestone name to its offset from the start.
	Milestones map[string]Seconds `json:"milestones,omitempty"`
	Scenarios  map[string]Outcome `json:"scenarios,omitempty"`
	// FailedStep is the predicate step that made a probe bad (Metadata.Verdict).
	FailedStep string `json:"failed_step,omitempty"`
}

// LedgerEntry summarises the run for the ledger.
func (r *Run) LedgerEntry() LedgerEntry {
	m := r.Metadata()
	e := LedgerEntry{
		Time: m.Started, Dir: r.Dir, Slug: m.Slug, Outcome: m.Outcome, Error: m.Error,
		Image: m.Image.Path, ImageSHA256: m.Image.SHA256, Accel: m.Accel.Name,
		BootlabVersion: m.BootlabVersion, Host: m.Host.Hostname,
		Milestones: map[string]Seconds{}, Scenarios: map[string]Outcome{},
	}
	if m.Ended != nil {
		e.Duration = Seconds(m.Ended.Sub(m.Started))
	}
	for _, ms := range m.Milestones {
		if ms.Name != MilestoneShutdown && IsShutdown(ms.Name) {
			continue // the stop's stages: in metadata.json and the report, not the trend
		}
		e.Milestones[ms.Name] = ms.At
	}
	for _, s := range m.Scenarios {
		e.Scenarios[s.Name] = s.Outcome
	}
	if m.Verdict != nil {
		e.FailedStep = m.Verdict.FailedStep
	}
	return e
}

// AppendLedger appends e as one JSON line. Several runs (goroutines or processes) may
// append at once: the line goes out in a single write(2) on an O_APPEND descriptor
// under an exclusive flock, so lines never interleave even past PIPE_BUF or on
// filesystems where O_APPEND alone is not atomic.
func AppendLedger(ledgerPath string, e LedgerEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding ledger entry: %w", err)
	}
	b = append(b, '\n')
	if err := os.MkdirAll(filepath.Dir(ledgerPath), 0o755); err != nil {
		return fmt.Errorf("ledger %s: %w", ledgerPath, err)
	}
	f, err := os.OpenFile(ledgerPath, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", ledgerPath, err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking ledger %s: %w", ledgerPath, err)
	}
	defer func() { _ = flock(f, unix.LOCK_UN) }()
	// A previous append cut short (disk full, a kill mid-write) left a line without
	// its newline; start on a line of our own so this entry is not glued to it.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			b = append([]byte{'\n'}, b...)
		}
	}
	n, err := f.Write(b)
	if err != nil {
		return fmt.Errorf("appending to ledger %s: %w", ledgerPath, err)
	}
	if n != len(b) {
		return fmt.Errorf("appending to ledger %s: short write %d of %d bytes", ledgerPath, n, len(b))
	}
	return nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// ReadLedger settles the runs next to the ledger (SettleAll), then parses it, skipping lines that do not parse (a hand-edited line, or
// a line cut short by a full disk) and reporting how many were skipped; a complete
// entry glued to the end of a torn line is still read. A missing ledger is empty, not
// an error.
func ReadLedger(ledgerPath string) (entries []LedgerEntry, skipped int, err error) {
	// Runs killed since the last look are entered as abandoned first. Errors are not
	// fatal here: a read-only copy of a notes directory must still be readable.
	_, _ = SettleAll(filepath.Dir(ledgerPath))
	f, err := os.Open(ledgerPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading ledger: %w", err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_SH); err != nil {
		return nil, 0, fmt.Errorf("locking ledger %s: %w", ledgerPath, err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var e LedgerEntry
		if json.Unmarshal(line, &e) != nil {
			skipped++
			if e, ok := recoverTornLine(line); ok {
				entries = append(entries, e)
			}
			continue
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return entries, skipped, fmt.Errorf("reading ledger %s: %w", ledgerPath, err)
	}
	return entries, skipped, nil
}

// recoverTornLine finds a complete entry at the end of a line that does not parse. An
// append cut short has no newline, so whatever the next writer appended (by a bootlab
// without AppendLedger's newline check, or a tool appending by hand) continues the same
// line. The entry is the suffix from the first `{"` at which the rest parses: a suffix
// starting inside the torn part opens more braces than it closes, or is followed by
// more text, so it cannot parse.
func recoverTornLine(line []byte) (LedgerEntry, bool) {
	for i := 1; i < len(line); i++ {
		j := bytes.Index(line[i:], []byte(`{"`))
		if j < 0 {
			break
		}
		i += j
		var e LedgerEntry
		if json.Unmarshal(line[i:], &e) == nil {
			return e, true
		}
	}
	return LedgerEntry{}, false
}
