// Package runrec keeps run records: one work-note directory per VM run holding the logs,
// metadata.json, captures, diagnostics and the report, plus a JSONL ledger with one line
// per run. Everything here is written so that a run killed at any moment still leaves a
// directory a person can read: metadata.json is replaced atomically and always parses,
// diagnostics are numbered files that never overwrite each other, and ledger lines from
// concurrent runs never interleave.
//
// The notes root is a parameter (harness/config decides it from BOOTLAB_NOTES and
// --notes); Create refuses an empty one rather than guess.
package runrec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
)

// File and directory names inside a run directory.
const (
	HarnessLog     = "harness.log"
	SerialLog      = "serial.log"
	TranscriptLog  = "transcript.log"
	ChannelLog     = "channel.log"
	MetadataFile   = "metadata.json"
	CapturesDir    = "captures"
	DiagnosticsDir = "diagnostics"
	ReportFile     = "report.html"
	LedgerFile     = "ledger.jsonl"
)

// TimeLayout names run directories: UTC with dashes, so names sort by time and are
// valid on every filesystem CI may copy them to (no colons).
const TimeLayout = "2006-01-02T15-04-05Z"

// MinFreeBytes is the free space the preflight insists on: a boot writes serial and
// harness logs of a few MiB, and failing before boot beats a truncated log after it.
var MinFreeBytes uint64 = 64 << 20

// DefaultLedger is the ledger next to the run directories.
func DefaultLedger(notesRoot string) string { return filepath.Join(notesRoot, LedgerFile) }

// Run is one run directory. Its methods are safe for concurrent use.
type Run struct {
	// Dir is the run directory (absolute).
	Dir string

	mu      sync.Mutex
	meta    Metadata
	diagSeq int
	// writeFile is swapped in tests to simulate a write that dies halfway.
	writeFile func(f *os.File, data []byte) error
}

// Create makes a new run directory under notesRoot named after now (UTC) and slug,
// with a -N suffix when the name is taken, checks that it is writable and has room,
// creates its subdirectories and writes the first metadata.json.
func Create(notesRoot, slug string, now time.Time) (*Run, error) {
	if notesRoot == "" {
		// The one notes default lives in harness/config; a caller that gets here
		// without one has lost its configuration, and guessing would scatter runs.
		return nil, errors.New("creating a run directory: no notes directory given (--notes or BOOTLAB_NOTES)")
	}
	root, err := filepath.Abs(notesRoot)
	if err != nil {
		return nil, fmt.Errorf("notes directory %q: %w", notesRoot, err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("notes directory %s cannot be created (set --notes or BOOTLAB_NOTES to a writable directory): %w", root, err)
	}
	slug = SanitizeSlug(slug)
	base := now.UTC().Format(TimeLayout) + "-" + slug
	var dir string
	for n := 1; ; n++ {
		name := base
		if n > 1 {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		dir = filepath.Join(root, name)
		// Mkdir is the uniqueness test: it fails with EEXIST atomically, so parallel
		// runs started in the same second each get their own directory. 0700 because
		// the console socket served for `bootlab attach` lives here.
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrExist) && n < 10000 {
			continue
		}
		return nil, fmt.Errorf("notes directory %s is not writable (set --notes or BOOTLAB_NOTES to a writable directory): %w", root, err)
	}
	if err := preflight(dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	for _, sub := range []string{CapturesDir, DiagnosticsDir} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("run directory %s: %w", dir, err)
		}
	}
	r := &Run{Dir: dir, meta: Metadata{
		Schema:         SchemaVersion,
		BootlabVersion: Version(),
		Slug:           slug,
		Started:        now.UTC(),
		Outcome:        Running,
		Milestones:     []Milestone{},
		Scenarios:      []Scenario{},
		Artefacts:      []Artefact{},
		Host:           hostInfo(),
		Owner:          currentOwner(),
	}}
	if err := r.Save(); err != nil {
		return nil, err
	}
	return r, nil
}

// preflight proves, before any VM is booted, that files can really be written here
// (a read-only mount passes permission bits but fails the write) and that there is
// room for the logs.
func preflight(dir string) error {
	probe := filepath.Join(dir, ".preflight")
	if err := os.WriteFile(probe, []byte("bootlab preflight\n"), 0o600); err != nil {
		return fmt.Errorf("run directory %s is not writable: %w", dir, err)
	}
	if err := os.Remove(probe); err != nil {
		return fmt.Errorf("run directory %s: removing the preflight probe: %w", dir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("run directory %s: statfs: %w", dir, err)
	}
	free := st.Bavail * uint64(st.Bsize)
	if free < MinFreeBytes {
		return fmt.Errorf("notes filesystem at %s has %d MiB free, need at least %d MiB for logs: free space or set --notes/BOOTLAB_NOTES elsewhere",
			dir, free>>20, MinFreeBytes>>20)
	}
	return nil
}

// Open loads an existing run directory (for report, attach, capture). A missing or
// corrupt metadata.json is an error: Save never leaves one, so it means this is not a
// run directory.
func Open(dir string) (*Run, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("run directory %q: %w", dir, err)
	}
	m, err := ReadMetadata(abs)
	if err != nil {
		return nil, err
	}
	r := &Run{Dir: abs, meta: m}
	r.diagSeq = lastDiagnosticNumber(filepath.Join(abs, DiagnosticsDir))
	return r, nil
}

// ReadMetadata parses dir/metadata.json.
func ReadMetadata(dir string) (Metadata, error) {
	var m Metadata
	b, err := os.ReadFile(filepath.Join(dir, MetadataFile))
	if err != nil {
		return m, fmt.Errorf("reading run metadata: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("parsing %s: %w", filepath.Join(dir, MetadataFile), err)
	}
	return m, nil
}

// Path joins name (e.g. SerialLog, "captures/x.txt") onto the run directory.
func (r *Run) Path(name string) string { return filepath.Join(r.Dir, filepath.FromSlash(name)) }

// Metadata returns a snapshot copy.
func (r *Run) Metadata() Metadata {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta.clone()
}

// Update applies fn to the metadata and saves it, under one lock so concurrent
// updates never lose each other's fields.
func (r *Run) Update(fn func(m *Metadata)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&r.meta)
	return r.saveLocked()
}

// SetImage records image provenance.
func (r *Run) SetImage(img Image) error { return r.Update(func(m *Metadata) { m.Image = img }) }

// SetQEMU records the QEMU command line, version and process id.
func (r *Run) SetQEMU(q QEMU) error { return r.Update(func(m *Metadata) { m.QEMU = q }) }

// SetAccel records the accelerator and why it was chosen.
func (r *Run) SetAccel(name, reason string) error {
	return r.Update(func(m *Metadata) { m.Accel = Accel{Name: name, Reason: reason} })
}

// SetShell records how root was reached and the framed-output transport.
func (r *Run) SetShell(sh Shell) error {
	return r.Update(func(m *Metadata) { m.Shell = &sh })
}

// Milestone records that name was reached at time at; its duration is the time since
// the latest earlier milestone (or since the start). Reaching a milestone again (a
// second login, say) keeps the first time: the timeline is about the first arrival.
func (r *Run) Milestone(name string, at time.Time) error {
	return r.Update(func(m *Metadata) {
		if _, ok := m.Milestone(name); ok {
			return
		}
		off := at.Sub(m.Started)
		var prev time.Duration
		for _, ms := range m.Milestones {
			if d := ms.At.D(); d <= off && d > prev {
				prev = d
			}
		}
		// A milestone reported late (its event came from another goroutine) lands
		// between two others: the later one's phase, if it was measured from the same
		// predecessor, now starts here instead.
		for i := range m.Milestones {
			if n := m.Milestones[i]; n.At.D() > off && n.At.D()-n.Duration.D() == prev {
				m.Milestones[i].Duration = Seconds(n.At.D() - off)
			}
		}
		m.Milestones = append(m.Milestones, Milestone{Name: name, At: Seconds(off), Duration: Seconds(off - prev)})
		sort.SliceStable(m.Milestones, func(i, j int) bool { return m.Milestones[i].At < m.Milestones[j].At })
	})
}

// Span records a milestone with an explicit phase: it began at start and ended at end
// (e.g. shutdown).
func (r *Run) Span(name string, start, end time.Time) error {
	return r.Update(func(m *Metadata) {
		m.Milestones = append(m.Milestones, Milestone{Name: name, At: Seconds(end.Sub(m.Started)), Duration: Seconds(end.Sub(start))})
		sort.SliceStable(m.Milestones, func(i, j int) bool { return m.Milestones[i].At < m.Milestones[j].At })
	})
}

// SpanNote is Span with a note saying why the phase ended.
func (r *Run) SpanNote(name string, start, end time.Time, note string) error {
	return r.Update(func(m *Metadata) {
		m.Milestones = append(m.Milestones, Milestone{Name: name, At: Seconds(end.Sub(m.Started)), Duration: Seconds(end.Sub(start)), Note: note})
		sort.SliceStable(m.Milestones, func(i, j int) bool { return m.Milestones[i].At < m.Milestones[j].At })
	})
}

// Scenario records (or replaces, by name) a scenario outcome.
func (r *Run) Scenario(s Scenario) error {
	return r.Update(func(m *Metadata) {
		for i := range m.Scenarios {
			if m.Scenarios[i].Name == s.Name {
				m.Scenarios[i] = s
				return
			}
		}
		m.Scenarios = append(m.Scenarios, s)
	})
}

// Finish records the end time and overall outcome (errText may be empty), refreshes
// the artefact catalogue and saves.
func (r *Run) Finish(outcome Outcome, errText string, ended time.Time) error {
	if err := r.Update(func(m *Metadata) {
		e := ended.UTC()
		m.Ended = &e
		m.Outcome = outcome
		m.Error = errText
	}); err != nil {
		return err
	}
	_, err := r.Catalogue()
	return err
}

// Save rewrites metadata.json atomically.
func (r *Run) Save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.saveLocked()
}

func (r *Run) saveLocked() error {
	b, err := json.MarshalIndent(&r.meta, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding run metadata: %w", err)
	}
	b = append(b, '\n')
	w := r.writeFile
	if w == nil {
		return atomicfile.Write(r.Path(MetadataFile), b, 0o644)
	}
	return atomicfile.WriteWith(r.Path(MetadataFile), 0o644, func(f *os.File) error { return w(f, b) })
}

// Diagnostic writes diagnostics/NN-slug.txt (NN counting up from 01 within the run),
// catalogues it and returns its path. Numbers are claimed with O_EXCL, so concurrent
// writers, even in other processes, never overwrite each other.
func (r *Run) Diagnostic(slug, body string) (string, error) {
	slug = SanitizeSlug(slug)
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	dir := r.Path(DiagnosticsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("diagnostics directory: %w", err)
	}
	r.mu.Lock()
	var (
		f    *os.File
		path string
	)
	for {
		r.diagSeq++
		path = filepath.Join(dir, fmt.Sprintf("%02d-%s.txt", r.diagSeq, slug))
		var err error
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		r.mu.Unlock()
		return "", fmt.Errorf("writing diagnostic %s: %w", slug, err)
	}
	r.mu.Unlock()
	if _, err := io.WriteString(f, body); err != nil {
		f.Close()
		return path, fmt.Errorf("writing diagnostic %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return path, fmt.Errorf("writing diagnostic %s: %w", path, err)
	}
	rel, _ := filepath.Rel(r.Dir, path)
	sum := sha256.Sum256([]byte(body))
	err := r.Update(func(m *Metadata) {
		m.Artefacts = upsertArtefact(m.Artefacts, Artefact{
			Path: filepath.ToSlash(rel), Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
			Description: "diagnostic: " + slug,
		})
	})
	return path, err
}

func lastDiagnosticNumber(dir string) int {
	ents, _ := os.ReadDir(dir)
	max := 0
	for _, e := range ents {
		var n int
		if _, err := fmt.Sscanf(e.Name(), "%d-", &n); err == nil && n > max {
			max = n
		}
	}
	return max
}

func upsertArtefact(list []Artefact, a Artefact) []Artefact {
	for i := range list {
		if list[i].Path == a.Path {
			if a.Description == "" {
				a.Description = list[i].Description
			}
			list[i] = a
			return list
		}
	}
	return append(list, a)
}

// Describe sets the catalogue description of a file (relative path) written by someone
// else, e.g. a capture or a screenshot; Catalogue keeps it.
func (r *Run) Describe(rel, description string) error {
	return r.Update(func(m *Metadata) {
		rel = filepath.ToSlash(rel)
		for i := range m.Artefacts {
			if m.Artefacts[i].Path == rel {
				m.Artefacts[i].Description = description
				return
			}
		}
		m.Artefacts = append(m.Artefacts, Artefact{Path: rel, Description: description})
	})
}

// Catalogue scans the run directory and replaces the artefact catalogue with every
// regular file in it (size, sha256, description), then saves. metadata.json itself,
// temporary files and sockets are left out: the first cannot hash itself, the others
// are not evidence.
func (r *Run) Catalogue() ([]Artefact, error) {
	var found []Artefact
	err := filepath.WalkDir(r.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(r.Dir, p)
		rel = filepath.ToSlash(rel)
		if rel == MetadataFile || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		size, sum, err := hashFile(p)
		if err != nil {
			return err
		}
		found = append(found, Artefact{Path: rel, Size: size, SHA256: sum, Description: describe(rel)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cataloguing %s: %w", r.Dir, err)
	}
	var out []Artefact
	err = r.Update(func(m *Metadata) {
		old := map[string]string{}
		for _, a := range m.Artefacts {
			if a.Description != "" {
				old[a.Path] = a.Description
			}
		}
		for i := range found {
			if d, ok := old[found[i].Path]; ok {
				found[i].Description = d
			}
		}
		m.Artefacts = found
		out = append([]Artefact(nil), found...)
	})
	return out, err
}

// HashFile returns the size and hex sha256 of a file.
func HashFile(path string) (int64, string, error) { return hashFile(path) }

func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", fmt.Errorf("hashing %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("hashing %s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func describe(rel string) string {
	switch rel {
	case HarnessLog:
		return "harness log (slog JSON lines)"
	case SerialLog:
		return "serial console, guest bytes as received"
	case TranscriptLog:
		return "console transcript, both directions, timestamped"
	case ChannelLog:
		return "virtio-serial frame channel, framed command output as received"
	case ReportFile:
		return "HTML report"
	case "captures/index.md":
		return "capture index"
	}
	switch {
	case strings.HasPrefix(rel, CapturesDir+"/"):
		return "capture"
	case strings.HasPrefix(rel, DiagnosticsDir+"/"):
		return "diagnostic"
	}
	return ""
}

// SanitizeSlug keeps [A-Za-z0-9_-], turns runs of anything else into one '-', trims
// dashes and caps the length so a test name with slashes and spaces makes a safe,
// readable directory name; empty becomes "run".
func SanitizeSlug(s string) string {
	var b strings.Builder
	dash := false
	for _, c := range s {
		ok := c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if ok && c != '-' {
			b.WriteRune(c)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimRight(b.String(), "-")
	if len(out) > 64 {
		out = strings.TrimRight(out[:64], "-")
	}
	if out == "" {
		return "run"
	}
	return out
}

// Version is the bootlab module version from the build info ("(devel)" in a checkout,
// plus the VCS revision when the binary was built from git).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "-dirty"
		}
	}
	return v
}

func hostInfo() Host {
	h := Host{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), CI: os.Getenv("CI") != ""}
	h.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = string(bytes.TrimRight(u.Release[:], "\x00"))
	}
	return h
}

// OpenAppend opens name (e.g. SerialLog, HarnessLog) in the run directory for
// appending, creating it. O_APPEND keeps writes from a reopened run (bootlab capture
// on a paused VM) after what is already there.
func (r *Run) OpenAppend(name string) (*os.File, error) {
	p := r.Path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("run file %s: %w", name, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run file %s: %w", name, err)
	}
	return f, nil
}
