// Package screen renders a raw console stream into a virtual terminal so that full-screen
// text UIs (the Debian installer's newt dialogs, whiptail, dialog) can be matched by what
// a person would see, not by the bytes that drew it: those UIs move the cursor around,
// redraw only what changed and draw boxes with the DEC line-drawing set, so the text of a
// menu item is rarely contiguous in the byte stream.
//
// Emulation is done by github.com/hinshun/vt10x. This package adds what a test harness
// needs on top: it is an io.Writer that can be fed from the console's drain goroutine
// while tests wait on it from others, it carries UTF-8 characters split across writes
// (vt10x drops them), it clamps numeric parameters that would make vt10x loop for hours,
// it maps SO/SI line drawing (TERM=vt100) onto what vt10x understands, it survives a
// panic inside the emulator, and it finds the highlighted item of a menu.
package screen

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/hinshun/vt10x"
)

// Options for New.
type Option func(*config)

type config struct {
	replies io.Writer
}

// WithReplies sends the emulator's answers to terminal queries (cursor position, device
// status) to w, normally the guest's input. Without it they are discarded, which suits a
// screen that only watches while the console answers queries itself. w is called from
// inside Write, with the screen locked: it must not call back into the Screen.
func WithReplies(w io.Writer) Option { return func(c *config) { c.replies = w } }

// Screen is a virtual terminal fed with raw console bytes. It is safe for concurrent use.
type Screen struct {
	mu         sync.Mutex
	term       vt10x.Terminal
	cols, rows int
	carry      []byte        // an incomplete UTF-8 character at the end of the last write
	filter     filter        // clamps huge CSI numbers, maps SO/SI line drawing
	changed    chan struct{} // closed and replaced after every write
	err        error         // first panic recovered from the emulator
	written    int64
}

// New makes a cols x rows screen (80x24 when either is not positive).
func New(cols, rows int, opts ...Option) *Screen {
	if cols <= 0 || rows <= 0 {
		cols, rows = 80, 24
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	vopts := []vt10x.TerminalOption{vt10x.WithSize(cols, rows)}
	if cfg.replies != nil {
		vopts = append(vopts, vt10x.WithWriter(cfg.replies))
	}
	return &Screen{
		term:    vt10x.New(vopts...),
		cols:    cols,
		rows:    rows,
		changed: make(chan struct{}),
	}
}

// Write feeds raw console bytes. It always consumes all of p: the console's tee ignores
// errors, and a rendering problem must not stall the drain. A panic inside the emulator
// is recovered and kept for Err.
func (s *Screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written += int64(len(p))
	buf := s.filter.filter(p)
	if len(s.carry) > 0 {
		buf = append(s.carry, buf...)
		s.carry = nil
	}
	// vt10x decodes runes per Write and drops a character cut by the end of the buffer,
	// so hold an incomplete trailing character back for the next write.
	if k := incompleteTail(buf); k > 0 {
		s.carry = append([]byte(nil), buf[len(buf)-k:]...)
		buf = buf[:len(buf)-k]
	}
	s.feed(buf)
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

func (s *Screen) feed(b []byte) {
	defer func() {
		if r := recover(); r != nil && s.err == nil {
			s.err = fmt.Errorf("screen: terminal emulator panicked after %d bytes of input: %v", s.written, r)
		}
	}()
	_, _ = s.term.Write(b)
}

// incompleteTail returns how many bytes at the end of b start a UTF-8 character that is
// not complete yet (0 if none).
func incompleteTail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		c := b[len(b)-k]
		if c < 0x80 {
			return 0
		}
		if c >= 0xc0 { // a lead byte: is its character complete?
			if utf8.FullRune(b[len(b)-k:]) {
				return 0
			}
			return k
		}
	}
	return 0
}

// Err reports a panic recovered from the emulator, if any; the screen may be stale after.
func (s *Screen) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Size returns the screen's dimensions.
func (s *Screen) Size() (cols, rows int) { return s.cols, s.rows }

// Lines returns every row of the screen with trailing spaces trimmed.
func (s *Screen) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.linesLocked()
}

func (s *Screen) linesLocked() []string {
	s.term.Lock()
	defer s.term.Unlock()
	lines := make([]string, s.rows)
	var b strings.Builder
	for y := 0; y < s.rows; y++ {
		b.Reset()
		for x := 0; x < s.cols; x++ {
			c := s.term.Cell(x, y).Char
			if c == 0 {
				c = ' '
			}
			b.WriteRune(c)
		}
		lines[y] = strings.TrimRight(b.String(), " ")
	}
	return lines
}

// Text returns the visible screen: its rows, trailing spaces trimmed, joined by newlines.
func (s *Screen) Text() string { return strings.Join(s.Lines(), "\n") }

// Contains reports whether sub is on the screen, within one row.
func (s *Screen) Contains(sub string) bool {
	for _, l := range s.Lines() {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// Cursor returns the cursor position, 0-based (a DSR answer adds 1 to each).
func (s *Screen) Cursor() (row, col int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.term.Lock()
	defer s.term.Unlock()
	c := s.term.Cursor()
	return c.Y, c.X
}

// Title returns the window title last set with OSC 0 or 2.
func (s *Screen) Title() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.term.Lock()
	defer s.term.Unlock()
	return s.term.Title()
}

// WaitFor blocks until cond holds for the screen text, re-evaluating it after every write,
// and returns that text. On ctx's end it returns the error with the last screen, which is
// the evidence a failing test needs. cond runs without the screen locked.
func (s *Screen) WaitFor(ctx context.Context, cond func(text string) bool) (string, error) {
	for {
		s.mu.Lock()
		text := strings.Join(s.linesLocked(), "\n")
		ch := s.changed
		s.mu.Unlock()
		if cond(text) {
			return text, nil
		}
		select {
		case <-ctx.Done():
			return text, fmt.Errorf("waiting for the screen: %w; last screen:\n%s", ctx.Err(), text)
		case <-ch:
		}
	}
}

// WaitForText waits until sub is on the screen within one row.
func (s *Screen) WaitForText(ctx context.Context, sub string) error {
	_, err := s.WaitFor(ctx, func(text string) bool {
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, sub) {
				return true
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("waiting for %q on the screen: %w", sub, err)
	}
	return nil
}

// Span is a run of cells on one row that share a visual background.
type Span struct {
	Row, Col int    // of the first cell, 0-based
	Text     string // the cells' characters, spaces kept
	// BG is the background as displayed: vt10x swaps FG and BG for reverse video, so a
	// reverse-video run on default colours has BG vt10x.DefaultFG.
	BG, FG  vt10x.Color
	Reverse bool // the reverse-video attribute was set on the first cell
}

// reverseMode is vt10x's unexported attrReverse bit of Glyph.Mode (1 << 0 in state.go);
// TestReverseVideoBit pins it.
const reverseMode = 1

// snapshot copies the cells under the lock so the analysis below runs without it.
func (s *Screen) snapshot() [][]vt10x.Glyph {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.term.Lock()
	defer s.term.Unlock()
	grid := make([][]vt10x.Glyph, s.rows)
	for y := range grid {
		grid[y] = make([]vt10x.Glyph, s.cols)
		for x := range grid[y] {
			g := s.term.Cell(x, y)
			if g.Char == 0 {
				g.Char = ' '
			}
			grid[y][x] = g
		}
	}
	return grid
}

// Spans splits every row into runs of cells with the same visual background.
func (s *Screen) Spans() []Span { return spans(s.snapshot()) }

func spans(grid [][]vt10x.Glyph) []Span {
	var out []Span
	var b strings.Builder
	for y, row := range grid {
		for x := 0; x < len(row); {
			g := row[x]
			sp := Span{Row: y, Col: x, BG: g.BG, FG: g.FG, Reverse: g.Mode&reverseMode != 0}
			b.Reset()
			for ; x < len(row) && row[x].BG == sp.BG; x++ {
				b.WriteRune(row[x].Char)
			}
			sp.Text = b.String()
			out = append(out, sp)
		}
	}
	return out
}

// Highlighted returns the text of every run that stands out from what surrounds it:
// non-blank cells whose visual background differs from the cells on the left and right
// (which share one background) and from every cell directly above and below. That is how
// newt, whiptail and dialog show the selected menu item and the focused button, in
// colour (the Debian installer on a serial console: red on light grey) or in reverse
// video on a monochrome terminal. The vertical test keeps out the top and bottom edges
// of a dialog box, which differ from the backdrop on both sides but continue into the
// box; a row of one background throughout (a status line) has no sides and highlights
// nothing. Texts are trimmed; the order is top to bottom, left to right.
func (s *Screen) Highlighted() []string {
	grid := s.snapshot()
	var out []string
	for _, sp := range spans(grid) {
		text := strings.TrimSpace(sp.Text)
		if text == "" {
			continue
		}
		row := grid[sp.Row]
		end := sp.Col + utf8.RuneCountInString(sp.Text) // exclusive
		hasLeft, hasRight := sp.Col > 0, end < len(row)
		if !hasLeft && !hasRight {
			continue
		}
		if hasLeft && hasRight && row[sp.Col-1].BG != row[end].BG {
			continue
		}
		if stripShares(grid, sp.Row-1, sp.Col, end, sp.BG) || stripShares(grid, sp.Row+1, sp.Col, end, sp.BG) {
			continue
		}
		out = append(out, text)
	}
	return out
}

// stripShares reports whether any cell of row y in columns [x0, x1) has background bg.
func stripShares(grid [][]vt10x.Glyph, y, x0, x1 int, bg vt10x.Color) bool {
	if y < 0 || y >= len(grid) {
		return false
	}
	for x := x0; x < x1; x++ {
		if grid[y][x].BG == bg {
			return true
		}
	}
	return false
}
