// Package capture runs named sets of diagnostic commands in a guest and writes one file
// per command plus an index, so that a failed wait leaves the evidence behind instead of
// a bare "timed out".
//
// Commands go through a Runner (the shell package implements it over the serial console).
// Each capture has its own timeout; a capture that fails or hangs is recorded and the
// rest go on, because the capture after a hung journalctl is often the one that explains
// the failure. Only a transport failure that means the guest is gone stops a run early.
package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/rundiff"
)

// Runner executes one shell command in the guest. err is only for transport failures
// (the command's own failure is a non-zero status): a context that ends, a guest that is
// gone. When ctx ends, Exec must return promptly and leave the shell usable for the next
// command (interrupting the one in flight), or return an error wrapping ErrGone.
type Runner interface {
	Exec(ctx context.Context, cmd string) (output []byte, status int, err error)
}

// ErrGone marks a transport error after which no command can run (QEMU exited, the
// console closed). A Runner wraps its error with it, e.g.
// fmt.Errorf("%w: %w", capture.ErrGone, err), or returns an error with a Gone() bool
// method; Capture then stops and records the rest as skipped.
var ErrGone = errors.New("the guest is gone")

// Gone reports whether err means the guest can no longer run commands.
func Gone(err error) bool {
	if errors.Is(err, ErrGone) {
		return true
	}
	var g interface{ Gone() bool }
	return errors.As(err, &g) && g.Gone()
}

// DefaultTimeout bounds a capture whose Item has no Timeout. At 115200 baud a serial line
// moves about 11 KB/s, so 20 s is room for a few hundred lines of status output.
const DefaultTimeout = 20 * time.Second

// maxFileBytes bounds each guest file copied by a Glob item: log files grow without limit
// and the serial line is slow; the tail is what explains a failure.
const maxFileBytes = 256 << 10

// maxGlobFiles bounds how many files a Glob item expands to.
const maxGlobFiles = 32

// Item is one capture.
type Item struct {
	// Name is the output file's base name without extension, e.g. "systemd-list-jobs".
	Name string
	// Label says what the capture is, for humans (the index, a report).
	Label string
	// Cmd is a shell command. It runs in a subshell with pagers and colours off and
	// stderr merged into stdout.
	Cmd string
	// Glob, instead of Cmd, captures every regular file matching a shell glob in the
	// guest, one capture per file (at most 32, the last 256 KiB of each), after a
	// listing capture named Name.
	Glob string
	// Timeout bounds this capture; zero means DefaultTimeout.
	Timeout time.Duration
	// NotApplicable, when set, records the capture as not taken for this reason (the
	// image has no systemd, or lacks the tool) instead of running a command that can
	// only fail.
	NotApplicable string
}

// Set is a named group of captures.
type Set struct {
	Name  string
	Items []Item
}

// Entry records one capture in the index.
type Entry struct {
	Set     string
	Name    string
	Label   string
	Command string // as given in the Item (or generated for a glob), without the wrapper
	// Status is the command's exit status; -1 when it did not finish.
	Status   int
	Duration time.Duration
	// File is the output file's name inside the capture directory; empty if none.
	File string
	Size int
	// Err is the transport error, if any (a timeout included).
	Err      string
	TimedOut bool
	// Skipped is set for captures not attempted because the guest was gone or the
	// caller's context ended; Err says which.
	Skipped bool
	// Note says why a capture that does not apply to this image was not taken.
	Note string
	// Taken is when the capture started.
	Taken time.Time
}

// Index is the result of one Capture call.
type Index struct {
	Dir     string
	Started time.Time
	Entries []Entry
	// Stopped says why the run stopped early; empty if every capture was attempted.
	Stopped string
}

// envPrefix turns off everything that makes output interactive or decorated. It is set
// inside a subshell so the interactive shell the Runner drives is not changed.
const envPrefix = "export SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 SYSTEMD_LESS= PAGER=cat TERM=dumb NO_COLOR=1 LC_ALL=C; "

// Wrap is the command line a Runner receives for cmd.
func Wrap(cmd string) string {
	// One line: a newline would meet the interactive shell's PS2 continuation prompt.
	return "( " + envPrefix + cmd + " ) 2>&1 </dev/null"
}

// Capture runs the sets in order and writes the outputs and index.md into dir (created
// if missing). A capture that fails, hangs past its timeout or returns a transport error
// is recorded and the next one runs. If the guest is gone (see Gone) or ctx ends, the
// remaining captures are recorded as skipped, the index is still written, and the error
// says why. Errors writing files are returned too. Calling Capture again on the same
// directory adds files next to the old ones (never overwriting) and a section to the
// index.
func Capture(ctx context.Context, r Runner, dir string, sets ...Set) (Index, error) {
	idx := Index{Dir: dir, Started: time.Now()}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return idx, fmt.Errorf("creating capture directory: %w", err)
	}
	c := &run{ctx: ctx, r: r, dir: dir, idx: &idx, seen: map[string]bool{}}
	for _, set := range sets {
		for _, it := range set.Items {
			if c.stopErr != nil {
				c.skip(set.Name, it.Name, it.Label, commandOf(it))
				continue
			}
			if it.NotApplicable != "" {
				c.idx.Entries = append(c.idx.Entries, Entry{Set: set.Name, Name: it.Name, Label: it.Label,
					Command: it.Cmd, Status: -1, Skipped: true, Note: it.NotApplicable, Taken: time.Now()})
				continue
			}
			if it.Glob != "" {
				c.glob(set.Name, it)
			} else {
				c.one(set.Name, it)
			}
		}
	}
	if err := writeIndex(idx); err != nil && c.fsErr == nil {
		c.fsErr = err
	}
	if err := rundiff.AppendCaptureIndex(dir, records(idx)); err != nil && c.fsErr == nil {
		c.fsErr = err
	}
	switch {
	case c.stopErr != nil:
		return idx, c.stopErr
	case c.fsErr != nil:
		return idx, c.fsErr
	}
	return idx, nil
}

func commandOf(it Item) string {
	if it.Glob != "" {
		return globList(it.Glob)
	}
	return it.Cmd
}

type run struct {
	ctx     context.Context
	r       Runner
	dir     string
	idx     *Index
	seen    map[string]bool // commands already captured in this call
	stopErr error
	fsErr   error
}

func (c *run) skip(set, name, label, cmd string) {
	c.idx.Entries = append(c.idx.Entries, Entry{
		Set: set, Name: name, Label: label, Command: cmd, Status: -1,
		Skipped: true, Err: "not run: " + c.idx.Stopped, Taken: time.Now(),
	})
}

// one runs a single capture and records it. It returns the output for glob listings.
func (c *run) one(set string, it Item) []byte {
	if c.seen[it.Cmd] {
		// Wait diagnostics combine sets that share captures (list-jobs, dmesg); once is
		// enough, and a serial line is slow.
		return nil
	}
	c.seen[it.Cmd] = true
	if err := c.ctx.Err(); err != nil {
		c.stop(fmt.Errorf("capturing diagnostics: %w", err))
		c.skip(set, it.Name, it.Label, it.Cmd)
		return nil
	}
	timeout := it.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ictx, cancel := context.WithTimeout(c.ctx, timeout)
	start := time.Now()
	out, status, err := c.r.Exec(ictx, Wrap(it.Cmd))
	cancel()
	e := Entry{Set: set, Name: it.Name, Label: it.Label, Command: it.Cmd, Status: status, Duration: time.Since(start), Taken: start}
	if err != nil {
		e.Status = -1
		e.Err = err.Error()
		e.TimedOut = errors.Is(err, context.DeadlineExceeded) && c.ctx.Err() == nil
		if e.TimedOut {
			e.Err = fmt.Sprintf("timed out after %s: %v", timeout, err)
		}
	}
	file, werr := c.write(it.Name, out)
	if werr != nil && c.fsErr == nil {
		c.fsErr = werr
	}
	e.File, e.Size = file, len(out)
	c.idx.Entries = append(c.idx.Entries, e)
	switch {
	case err == nil:
	case Gone(err):
		c.stop(fmt.Errorf("capturing %s: %w", it.Name, err))
	case c.ctx.Err() != nil:
		c.stop(fmt.Errorf("capturing diagnostics: %w", c.ctx.Err()))
	}
	if err != nil {
		return nil
	}
	return out
}

func (c *run) stop(err error) {
	c.stopErr = err
	c.idx.Stopped = err.Error()
}

func globList(glob string) string {
	return fmt.Sprintf("for f in %s; do [ -f \"$f\" ] && printf '%%s\\n' \"$f\"; done; true", glob)
}

// globFile is the command that captures the k-th regular file (from 1) matching glob.
// The guest expands the glob again and picks the file by its position, so a file name,
// which whoever can write to the directory chooses, is never typed into the root shell:
// typed back, a name holding ^U or a newline would be a command of that user's choosing.
func globFile(glob string, k int) string {
	return fmt.Sprintf(`k=0; for f in %s; do [ -f "$f" ] || continue; k=$((k+1)); [ $k = %d ] || continue; tail -c %d -- "$f"; exit $?; done; echo "file %d of %s is gone"; exit 1`, glob, k, maxFileBytes, k, glob)
}

// glob lists the files matching it.Glob, then captures each one.
func (c *run) glob(set string, it Item) {
	list := c.one(set, Item{Name: it.Name, Label: it.Label + " (file list)", Cmd: globList(it.Glob), Timeout: it.Timeout})
	var files []string
	for _, l := range strings.Split(string(list), "\n") {
		if l != "" {
			files = append(files, l)
		}
	}
	if len(files) > maxGlobFiles {
		files = files[:maxGlobFiles]
	}
	for k, f := range files {
		// The listed name only labels the capture (a name with a newline in it shifts
		// the labels; the captured files are still the guest's own matches).
		sub := Item{
			Name:    it.Name + "-" + slug(filepath.Base(f)),
			Label:   strings.Trim(strconv.Quote(f), `"`),
			Cmd:     globFile(it.Glob, k+1),
			Timeout: it.Timeout,
		}
		if c.stopErr != nil {
			c.skip(set, sub.Name, sub.Label, sub.Cmd)
			continue
		}
		c.one(set, sub)
	}
}

// write stores out as <name>.txt, or <name>-2.txt ... if that exists already.
func (c *run) write(name string, out []byte) (string, error) {
	base := slug(name)
	for n := 1; n < 1000; n++ {
		file := base + ".txt"
		if n > 1 {
			file = fmt.Sprintf("%s-%d.txt", base, n)
		}
		f, err := os.OpenFile(filepath.Join(c.dir, file), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("writing capture %s: %w", name, err)
		}
		_, err = f.Write(out)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return file, fmt.Errorf("writing capture %s: %w", name, err)
		}
		return file, nil
	}
	return "", fmt.Errorf("writing capture %s: too many files of that name in %s", name, c.dir)
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// slug makes a file-name-safe name: anything but letters, digits, dot, dash and
// underscore becomes a dash, and a leading dot is removed so no capture is hidden.
func slug(s string) string {
	s = strings.Trim(unsafeChars.ReplaceAllString(s, "-"), "-.")
	if s == "" {
		return "capture"
	}
	return s
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeIndex appends this run's section to index.md, creating it with a header.
func writeIndex(idx Index) error {
	path := filepath.Join(idx.Dir, "index.md")
	var b strings.Builder
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		b.WriteString("# Captures\n\n")
	}
	fmt.Fprintf(&b, "## %s\n\n", idx.Started.UTC().Format(time.RFC3339))
	if idx.Stopped != "" {
		fmt.Fprintf(&b, "Stopped early: %s\n\n", mdCell(idx.Stopped))
	}
	b.WriteString("| set | capture | command | exit | duration | output | error |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, e := range idx.Entries {
		status := fmt.Sprint(e.Status)
		if e.Status < 0 {
			status = "-"
		}
		out := "-"
		if e.File != "" {
			out = fmt.Sprintf("[%s](%s) (%d B)", e.File, e.File, e.Size)
		}
		dur := "-"
		if !e.Skipped {
			dur = e.Duration.Round(time.Millisecond).String()
		}
		why := e.Err
		if e.Note != "" {
			why = "not taken: " + e.Note
		}
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s | %s | %s | %s |\n",
			mdCell(e.Set), mdCell(e.Label), mdCode(e.Command), status, dur, out, mdCell(why))
	}
	b.WriteString("\n")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("writing capture index: %w", err)
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing capture index: %w", err)
	}
	return nil
}

// records converts the index for index.json, which reports and run diffs read.
func records(idx Index) []rundiff.CaptureRecord {
	out := make([]rundiff.CaptureRecord, 0, len(idx.Entries))
	for _, e := range idx.Entries {
		out = append(out, rundiff.CaptureRecord{Set: e.Set, Name: e.Name, Label: e.Label, Command: e.Command,
			Status: e.Status, DurationMS: e.Duration.Milliseconds(), File: e.File, Size: e.Size, Err: e.Err,
			TimedOut: e.TimedOut, Skipped: e.Skipped, Note: e.Note, Taken: e.Taken.UTC()})
	}
	return out
}

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ")
}

func mdCode(s string) string {
	// A backtick would end the code span early; a pipe would end the table cell.
	s = strings.ReplaceAll(s, "`", "'")
	return mdCell(s)
}
