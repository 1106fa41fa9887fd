package bisect

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LogName is the append-only event log inside a bisect directory.
const LogName = "bisect.jsonl"

// logVersion is bumped when the meaning of events changes, so an old
// directory is refused instead of being resumed wrongly.
const logVersion = 1

// Event kinds, one JSON object per line in bisect.jsonl.
const (
	EventStart       = "start"
	EventProbeStart  = "probe-start"
	EventProbeResult = "probe-result"
	EventDecision    = "decision"
	EventDone        = "done"
)

// Event is one line of bisect.jsonl. Only the fields of its kind are set.
type Event struct {
	Seq   int       `json:"seq"`
	Time  time.Time `json:"time"`
	Event string    `json:"event"`

	// start
	Version    int         `json:"version,omitempty"`
	Candidates []Candidate `json:"candidates,omitempty"`
	Parallel   int         `json:"parallel,omitempty"`
	Retries    int         `json:"retries,omitempty"`
	Flaky      FlakyPolicy `json:"flaky,omitempty"`
	Predicate  *Predicate  `json:"predicate,omitempty"`
	// ProbeTimeoutMS is Config.ProbeTimeout.
	ProbeTimeoutMS int64 `json:"probe_timeout_ms,omitempty"`

	// probe-start, probe-result
	Round      int     `json:"round,omitempty"`
	Index      *int    `json:"index,omitempty"`
	Name       string  `json:"name,omitempty"`
	Attempt    int     `json:"attempt,omitempty"`
	RunDir     string  `json:"run_dir,omitempty"`
	Verdict    Verdict `json:"verdict,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	DurationMS int64   `json:"duration_ms,omitempty"`

	// decision, done
	Message  string  `json:"message,omitempty"`
	LastGood *int    `json:"last_good,omitempty"`
	FirstBad *int    `json:"first_bad,omitempty"`
	Suspects []int   `json:"suspects,omitempty"`
	Status   Status  `json:"status,omitempty"`
	Probes   int     `json:"probes,omitempty"`
	Rounds   int     `json:"rounds,omitempty"`
	Flake    float64 `json:"flake_rate,omitempty"`
}

func intp(i int) *int { return &i }

// ReadLog parses bisect.jsonl. A last line without its newline that does not
// parse is a write torn by a crash and is dropped (torn reports it); any
// other malformed line is an error, because silently skipping a probe result
// in the middle would make a resume re-run or mis-decide.
func ReadLog(r io.Reader) (events []Event, torn bool, err error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, false, fmt.Errorf("reading bisect log: %w", err)
	}
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		line := data
		complete := false
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data, complete = data[:i], data[i+1:], true
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev Event
		err := json.Unmarshal(line, &ev)
		if err == nil {
			err = ev.check()
		}
		if err != nil {
			if !complete {
				torn = true
				break
			}
			return nil, false, fmt.Errorf("bisect log line %d: %w", lineNo, err)
		}
		events = append(events, ev)
	}
	if len(events) > 0 && events[0].Event != EventStart {
		return nil, false, fmt.Errorf("bisect log: first event is %q, want %q", events[0].Event, EventStart)
	}
	return events, torn, nil
}

func (ev Event) check() error {
	switch ev.Event {
	case EventStart:
		if ev.Version != logVersion {
			return fmt.Errorf("log version %d, this bootlab reads version %d", ev.Version, logVersion)
		}
		for _, c := range ev.Candidates {
			if err := c.validate(); err != nil {
				return err
			}
		}
	case EventProbeStart, EventProbeResult:
		if ev.Index == nil || *ev.Index < 0 || ev.Attempt < 0 {
			return fmt.Errorf("%s event without a valid candidate index/attempt", ev.Event)
		}
		if ev.Event == EventProbeResult && !ev.Verdict.valid() {
			return fmt.Errorf("probe-result with verdict %q", ev.Verdict)
		}
	case EventDecision, EventDone:
	default:
		return fmt.Errorf("unknown event %q", ev.Event)
	}
	return nil
}

// ReadLogFile reads DIR/bisect.jsonl.
func ReadLogFile(dir string) ([]Event, bool, error) {
	f, err := os.Open(filepath.Join(dir, LogName))
	if err != nil {
		return nil, false, fmt.Errorf("opening bisect log: %w", err)
	}
	defer f.Close()
	return ReadLog(f)
}

// logWriter appends events; each is one write of one full line followed by
// fsync, so a crash loses at most the line being written.
type logWriter struct {
	mu   sync.Mutex
	f    *os.File
	seq  int
	now  func() time.Time
	sync bool
}

// openLog opens the log for appending after cutting a torn tail, which
// would otherwise glue the next event onto garbage in the middle of the file.
func openLog(dir string, seq int, now func() time.Time, sync bool) (*logWriter, error) {
	p := filepath.Join(dir, LogName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening bisect log for append: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading bisect log: %w", err)
	}
	keep := int64(bytes.LastIndexByte(data, '\n') + 1)
	if keep != int64(len(data)) {
		if err := f.Truncate(keep); err != nil {
			f.Close()
			return nil, fmt.Errorf("cutting torn tail of bisect log: %w", err)
		}
	}
	if _, err := f.Seek(keep, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seeking bisect log: %w", err)
	}
	return &logWriter{f: f, seq: seq, now: now, sync: sync}, nil
}

func (w *logWriter) append(ev Event) error {
	if w == nil {
		return nil // memOnly
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	ev.Seq = w.seq
	ev.Time = w.now().UTC()
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", ev.Event, err)
	}
	b = append(b, '\n')
	if _, err := w.f.Write(b); err != nil {
		return fmt.Errorf("appending %s event to bisect log: %w", ev.Event, err)
	}
	if !w.sync {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing bisect log: %w", err)
	}
	return nil
}

func (w *logWriter) Close() error {
	if w == nil || w.f == nil {
		return nil
	}
	return w.f.Close()
}

var errNoStart = errors.New("bisect log has no start event")

// writeLines is used by tests and fuzzing to re-encode parsed events.
func writeLines(w io.Writer, evs []Event) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, ev := range evs {
		if err := enc.Encode(ev); err != nil {
			return err
		}
	}
	return bw.Flush()
}
