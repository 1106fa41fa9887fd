// Package console owns a guest's serial line: one goroutine drains it for the life of the
// VM, every byte the guest sends goes to serial.log untouched, both directions go to a
// timestamped transcript, and a normalised copy (escape sequences and CRs removed) is
// kept for matching.
//
// It does not use go-expect for matching, on purpose (docs/decisions.md): go-expect reads
// only inside Expect, its timeout is an idle deadline that a chatty console never reaches,
// and it rescans the whole buffer after every rune. Here, waits are cursor based: a caller
// remembers a position in the normalised stream and asks for the first match after it,
// bounded by a context, and each new chunk is scanned once plus a short overlap.
package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Normalizer turns raw console bytes into matchable text. It keeps state between calls
// so that an escape sequence split across two reads is still removed whole.
type Normalizer interface {
	Write(p []byte) []byte
}

// ErrClosed reports that the guest side of the line is gone (QEMU exited).
var ErrClosed = errors.New("console closed: the guest side of the serial line is gone")

// maxMatchLen bounds how far back a regular expression is re-examined when new text
// arrives. Prompts and markers are far shorter; the bound keeps matching linear in the
// amount of console output instead of quadratic (the go-expect trap).
const maxMatchLen = 4096

// Options configure a Console. Every field is optional.
type Options struct {
	// SerialLog receives the guest's bytes exactly as read (serial.log).
	SerialLog io.Writer
	// Transcript receives both directions as timestamped, quoted lines (transcript.log).
	Transcript io.Writer
	// Normalizer produces the text that waits match against. Nil keeps bytes as they are.
	Normalizer Normalizer
	// Window is how many bytes of normalised text are kept for matching; older text is
	// dropped. Zero means 64 MiB.
	Window int
	// Logger receives structured events.
	Logger *slog.Logger
	// Now is the clock for transcript stamps.
	Now func() time.Time
	// AnswerDSR makes the console answer a cursor-position query (ESC [ 6 n) the way a
	// terminal would; busybox and others stall for a while when nobody answers.
	AnswerDSR bool
	// Tee receives the guest's raw bytes as well (an attached terminal, a screen model).
	Tee io.Writer
}

// Console is a serial line being drained. It is safe for concurrent use, but the shell
// package keeps one command in flight at a time on top of it.
type Console struct {
	rw   io.ReadWriter
	opts Options
	log  *slog.Logger

	wmu sync.Mutex // serialises writes to the guest and to the transcript

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever text arrives or the line closes
	text    []byte        // normalised text, text[0] is at absolute offset base
	base    int64
	raw     bytes.Buffer // last rawKeep bytes of raw guest output, for tails
	closed  error
	total   int64 // raw guest bytes read
	first   time.Time
	last    time.Time
	dsr     []byte // carry for a DSR query split across reads
	tees    []*tee
	done    chan struct{}

	// Cursor-position bookkeeping for Settle: queries the guest sent (ESC [ 6 n) and
	// reports sent to it (ESC [ r ; c R, by the console itself or anyone else), and when
	// the harness last wrote to the line.
	queries, reports int64
	lastIn           time.Time
}

const rawKeep = 256 << 10

type tee struct{ w io.Writer }

// New starts draining rw. The caller keeps ownership of rw and closes it to stop the
// drain; Close waits for the drain goroutine.
func New(rw io.ReadWriter, opts Options) *Console {
	if opts.Window <= 0 {
		opts.Window = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Console{rw: rw, opts: opts, log: opts.Logger, changed: make(chan struct{}), done: make(chan struct{})}
	if opts.Tee != nil {
		c.tees = append(c.tees, &tee{opts.Tee})
	}
	go c.drain()
	return c
}

// AddTee starts copying raw guest bytes to w (for example an attached terminal); the
// returned function stops it. Writes to w must not block for long: they happen on the
// drain goroutine.
func (c *Console) AddTee(w io.Writer) (remove func()) {
	entry := &tee{w} // compared by pointer: writers themselves may not be comparable
	c.mu.Lock()
	c.tees = append(c.tees, entry)
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, t := range c.tees {
			if t == entry {
				c.tees = append(c.tees[:i], c.tees[i+1:]...)
				return
			}
		}
	}
}

func (c *Console) drain() {
	defer close(c.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := c.rw.Read(buf)
		if n > 0 {
			c.ingest(buf[:n])
		}
		if err != nil {
			// On Linux the master side of a pty reports EIO once the last slave closes.
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed) {
				err = ErrClosed
			} else {
				// Any other read error ends the drain too (a unix-socket line reset by a
				// killed QEMU: ECONNRESET), so it is a closed line to every waiter.
				err = fmt.Errorf("%w (reading the line: %v)", ErrClosed, err)
			}
			c.mu.Lock()
			c.closed = err
			c.signalLocked()
			c.mu.Unlock()
			c.log.Debug("console.closed", "reason", err.Error(), "bytes", c.Total())
			return
		}
	}
}

func (c *Console) ingest(p []byte) {
	now := c.opts.Now()
	if c.opts.SerialLog != nil {
		_, _ = c.opts.SerialLog.Write(p)
	}
	c.transcribe(now, '<', p)
	norm := p
	if c.opts.Normalizer != nil {
		norm = c.opts.Normalizer.Write(p)
	}
	queries := c.scanDSR(p)
	if queries > 0 {
		c.mu.Lock()
		c.queries += int64(queries)
		c.mu.Unlock()
	}
	if c.opts.AnswerDSR {
		// Answered before the text is published: a waiter that sees the prompt this
		// chunk carries types only after the answer, so the answer reaches the guest
		// first. Sent the other way round, it arrived behind the harness's line, after
		// the line editor that asked had already handed the line over (and `stty -echo`
		// had put the tty in cooked mode), and became the first bytes of the next
		// command: `sh: 1R__bl: not found` (issue 26). Row 24 is a guess that no program
		// here depends on; the column is what line editors use, and 1 keeps them from
		// inserting padding. One answer per query, as a terminal gives.
		// Bounded: this is the drain goroutine, and a guest that stops reading its
		// line must not stall it.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		for i := 0; i < queries; i++ {
			_ = c.Send(ctx, CursorReport)
		}
		cancel()
	}

	c.mu.Lock()
	if c.total == 0 {
		c.first = now
	}
	c.total += int64(len(p))
	c.last = now
	c.raw.Write(p)
	if c.raw.Len() > 2*rawKeep {
		keep := c.raw.Bytes()[c.raw.Len()-rawKeep:]
		c.raw = *bytes.NewBuffer(append([]byte(nil), keep...))
	}
	c.text = append(c.text, norm...)
	if over := len(c.text) - c.opts.Window; over > 0 {
		c.text = append(c.text[:0], c.text[over:]...)
		c.base += int64(over)
	}
	tees := append([]*tee(nil), c.tees...)
	c.signalLocked()
	c.mu.Unlock()

	for _, t := range tees {
		_, _ = t.w.Write(p)
	}
}

// CursorReport is the console's answer to a cursor-position query (AnswerDSR).
const CursorReport = "\x1b[24;1R"

// scanDSR counts the ESC [ 6 n queries in p joined to the tail of the previous read
// (the carry is shorter than a query, so none is counted twice).
func (c *Console) scanDSR(p []byte) int {
	const q = "\x1b[6n"
	joined := append(c.dsr, p...)
	found := bytes.Count(joined, []byte(q))
	keep := len(q) - 1
	if len(joined) < keep {
		keep = len(joined)
	}
	c.dsr = append(c.dsr[:0], joined[len(joined)-keep:]...)
	return found
}

func (c *Console) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Console) transcribe(at time.Time, dir byte, p []byte) {
	if c.opts.Transcript == nil || len(p) == 0 {
		return
	}
	line := at.UTC().Format("2006-01-02T15:04:05.000000Z") + " " + string(dir) + " " + strconv.Quote(string(p)) + "\n"
	c.wmu.Lock()
	_, _ = io.WriteString(c.opts.Transcript, line)
	c.wmu.Unlock()
}

// Send writes s to the guest. It gives up when ctx ends; a pty write blocks only when the
// guest stops reading, which is itself worth a clear error.
func (c *Console) Send(ctx context.Context, s string) error {
	return c.send(ctx, s, s)
}

// Redacted is what transcript.log shows in place of a secret sent with SendSecret.
const Redacted = "<secret redacted>"

// SendSecret writes s to the guest like Send, but transcript.log shows Redacted
// instead (keeping a final newline, so the transcript still shows that a line was
// entered): run directories are shared and attached to bug reports, and a login or
// sudo password does not belong in them.
func (c *Console) SendSecret(ctx context.Context, s string) error {
	shown := Redacted
	if strings.HasSuffix(s, "\n") {
		shown += "\n"
	}
	return c.send(ctx, s, shown)
}

func (c *Console) send(ctx context.Context, s, shown string) error {
	if err := c.Err(); err != nil {
		return err
	}
	c.transcribe(c.opts.Now(), '>', []byte(shown))
	n := int64(len(cursorReports.FindAllStringIndex(s, -1)))
	c.mu.Lock()
	// A surplus report (a second answerer) answers no later query.
	c.reports = min(c.reports+n, c.queries)
	c.lastIn = time.Now()
	c.mu.Unlock()
	errc := make(chan error, 1)
	go func() {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		_, err := io.WriteString(c.rw, s)
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("writing %d bytes to the serial line: %w", len(s), err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("writing %d bytes to the serial line: guest not reading: %w", len(s), ctx.Err())
	}
}

// Pos is the absolute offset just past the newest normalised text.
func (c *Console) Pos() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base + int64(len(c.text))
}

// Total is the number of raw bytes the guest has sent.
func (c *Console) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// FirstOutput is when the guest's first byte arrived (zero if none yet).
func (c *Console) FirstOutput() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

// LastOutput is when the guest's latest byte arrived (zero if none yet).
func (c *Console) LastOutput() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Err is non-nil once the line has closed.
func (c *Console) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Done is closed when the drain goroutine has ended.
func (c *Console) Done() <-chan struct{} { return c.done }

// Read returns a copy of the normalised text from pos to the current end, and the new
// end. It fails if pos has already been dropped from the window.
func (c *Console) Read(pos int64) ([]byte, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readLocked(pos)
}

func (c *Console) readLocked(pos int64) ([]byte, int64, error) {
	end := c.base + int64(len(c.text))
	if pos < c.base {
		return nil, end, fmt.Errorf("console window overflow: position %d was dropped (window starts at %d)", pos, c.base)
	}
	if pos > end {
		pos = end
	}
	return append([]byte(nil), c.text[pos-c.base:]...), end, nil
}

// WaitBeyond blocks until text past pos exists, the line closes, or ctx ends.
func (c *Console) WaitBeyond(ctx context.Context, pos int64) error {
	for {
		c.mu.Lock()
		end := c.base + int64(len(c.text))
		closed := c.closed
		ch := c.changed
		c.mu.Unlock()
		if end > pos {
			return nil
		}
		if closed != nil {
			return closed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Pattern is one alternative of an Expect call.
type Pattern struct {
	Name string
	Re   *regexp.Regexp
}

// Literal makes a pattern matching s exactly.
func Literal(name, s string) Pattern {
	return Pattern{Name: name, Re: regexp.MustCompile(regexp.QuoteMeta(s))}
}

// Regexp makes a pattern from an expression.
func Regexp(name, expr string) Pattern {
	return Pattern{Name: name, Re: regexp.MustCompile(expr)}
}

// Match describes where a pattern matched in the normalised stream.
type Match struct {
	Index      int    // which pattern
	Name       string // its name
	Start, End int64  // absolute offsets of the match
	Text       string // the matched text
	Before     string // text between the starting position and the match
}

// TimeoutError is returned when a wait's deadline passes; it carries what the console
// showed, since that is the only evidence of why.
type TimeoutError struct {
	Waiting string
	After   time.Duration
	Tail    string
	Cause   error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for %s; last console output:\n%s", e.After.Round(time.Millisecond), e.Waiting, indent(e.Tail))
}

func (e *TimeoutError) Unwrap() error { return e.Cause }

// ClosedError is returned when the line closes during a wait.
type ClosedError struct {
	Waiting string
	Tail    string
}

func (e *ClosedError) Error() string {
	return fmt.Sprintf("serial line closed (QEMU exited?) while waiting for %s; last console output:\n%s", e.Waiting, indent(e.Tail))
}

func (e *ClosedError) Unwrap() error { return ErrClosed }

func indent(s string) string {
	if s == "" {
		return "    (nothing)"
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    | " + l
	}
	return strings.Join(lines, "\n")
}

// Expect waits for the earliest match of any pattern in the text after pos. The wait is
// bounded only by ctx: a total deadline, however much the guest prints meanwhile.
func (c *Console) Expect(ctx context.Context, pos int64, pats ...Pattern) (Match, error) {
	if len(pats) == 0 {
		return Match{}, errors.New("expect: no patterns")
	}
	start := time.Now()
	scanFrom := pos
	for {
		c.mu.Lock()
		text, end, err := c.readLocked(pos)
		closed := c.closed
		ch := c.changed
		c.mu.Unlock()
		if err != nil {
			return Match{}, err
		}
		// Only the text after scanFrom-maxMatchLen can hold a match not seen before.
		off := int(scanFrom - maxMatchLen - pos)
		if off < 0 {
			off = 0
		}
		if m, ok := earliest(text, off, pats); ok {
			return Match{
				Index:  m.idx,
				Name:   pats[m.idx].Name,
				Start:  pos + int64(m.lo),
				End:    pos + int64(m.hi),
				Text:   string(text[m.lo:m.hi]),
				Before: string(text[:m.lo]),
			}, nil
		}
		scanFrom = end
		if closed != nil {
			return Match{}, &ClosedError{Waiting: describe(pats), Tail: c.Tail(40)}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Match{}, &TimeoutError{Waiting: describe(pats), After: time.Since(start), Tail: c.Tail(40), Cause: ctx.Err()}
		}
	}
}

type hit struct{ idx, lo, hi int }

func earliest(text []byte, off int, pats []Pattern) (hit, bool) {
	best := hit{lo: -1}
	for i, p := range pats {
		loc := p.Re.FindIndex(text[off:])
		if loc == nil {
			continue
		}
		if best.lo < 0 || off+loc[0] < best.lo {
			best = hit{idx: i, lo: off + loc[0], hi: off + loc[1]}
		}
	}
	return best, best.lo >= 0
}

func describe(pats []Pattern) string {
	names := make([]string, len(pats))
	for i, p := range pats {
		n := p.Name
		if n == "" {
			n = p.Re.String()
		}
		names[i] = strconv.Quote(n)
	}
	return strings.Join(names, " or ")
}

// Tail returns the last n lines of the normalised text, for error messages.
func (c *Console) Tail(n int) string {
	c.mu.Lock()
	text := c.text
	if len(text) > 64<<10 {
		text = text[len(text)-64<<10:]
	}
	s := string(text)
	c.mu.Unlock()
	return lastLines(s, n)
}

// RawTail returns the last n bytes the guest sent, unmodified.
func (c *Console) RawTail(n int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.raw.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return append([]byte(nil), b...)
}

func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cursorReports finds cursor-position reports in what is sent to the guest.
var cursorReports = regexp.MustCompile(`\x1b\[[0-9]+;[0-9]+R`)

// Settle waits until the line is quiet and empty before the harness types into a shell
// that a person or a line editor may have left mid-dialogue: every cursor-position query
// the guest sent has had its report sent, and no byte has crossed the line in either
// direction for quiet. A report that arrives after the harness's line is typed becomes
// the start of the next command once the shell reads in cooked mode again (issue 26).
// It returns ctx's error, with what is still outstanding, if the line does not settle.
func (c *Console) Settle(ctx context.Context, quiet time.Duration) error {
	for {
		c.mu.Lock()
		pending := c.queries - c.reports
		last := c.last
		if c.lastIn.After(last) {
			last = c.lastIn
		}
		closed := c.closed
		ch := c.changed
		c.mu.Unlock()
		if closed != nil {
			return closed
		}
		wait := quiet - time.Since(last)
		if pending <= 0 && wait <= 0 {
			return nil
		}
		if wait <= 0 || wait > quiet {
			wait = quiet
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if pending > 0 {
				return fmt.Errorf("the line did not settle: %d cursor-position queries unanswered: %w", pending, ctx.Err())
			}
			return fmt.Errorf("the line did not settle: the guest kept printing: %w", ctx.Err())
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}
