package screen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hinshun/vt10x"
)

// at moves the cursor to a 1-based row and column.
func at(row, col int) string { return fmt.Sprintf("\x1b[%d;%dH", row, col) }

// menu draws a whiptail-like dialog the way newt does on a vt102: backdrop, a box in the
// DEC line-drawing set, a title, items written at absolute positions in no particular
// order, the selected one highlighted by hl (reverse video or a colour), and buttons.
// colour selects the newt colour scheme; otherwise it is monochrome.
func menu(items []string, selected int, colour bool) string {
	var b strings.Builder
	backdrop, window, hl := "\x1b[0m", "\x1b[0m", "\x1b[0m\x1b[7m"
	if colour {
		backdrop, window, hl = "\x1b[0m\x1b[37;44m", "\x1b[0m\x1b[30;47m", "\x1b[0m\x1b[37;41m"
	}
	b.WriteString("\x1b[?1049h\x1b[1;24r" + backdrop + "\x1b[H\x1b[2J")
	b.WriteString(backdrop + at(1, 1) + "Debian installer main menu")
	// Box: rows 5..16, columns 10..61.
	b.WriteString(window + at(5, 10) + "\x1b(0l" + strings.Repeat("q", 14) + "u\x1b(B [!] Choose language \x1b(0t" + strings.Repeat("q", 12) + "k\x1b(B")
	for r := 6; r <= 15; r++ {
		b.WriteString(window + at(r, 10) + "\x1b(0x\x1b(B" + strings.Repeat(" ", 50) + "\x1b(0x\x1b(B")
	}
	b.WriteString(window + at(16, 10) + "\x1b(0m" + strings.Repeat("q", 50) + "j\x1b(B")
	b.WriteString(window + at(7, 12) + "Language:")
	// Items bottom-up, as a redraw after scrolling might do.
	for i := len(items) - 1; i >= 0; i-- {
		attr := window
		if i == selected {
			attr = hl
		}
		b.WriteString(window + at(9+i, 20) + attr + fmt.Sprintf(" %-14s ", items[i]) + window)
	}
	b.WriteString(window + at(14, 14) + "<Go Back>")
	b.WriteString(backdrop + at(24, 1) + "<Tab> moves; <Space> selects; <Enter> activates buttons")
	b.WriteString(at(9+selected, 21)) // newt leaves the cursor on the selection
	return b.String()
}

var items = []string{"C", "English", "Deutsch", "Français", "日本語"}

func feedAll(s *Screen, chunks [][]byte) {
	for _, c := range chunks {
		s.Write(c)
	}
}

func chunkings(t *testing.T, in []byte) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{"whole": {in}}
	var bb [][]byte
	for i := range in {
		bb = append(bb, in[i:i+1])
	}
	out["byte by byte"] = bb
	r := rand.New(rand.NewPCG(uint64(len(in)), 9))
	for k := 0; k < 5; k++ {
		var ch [][]byte
		for p := 0; p < len(in); {
			n := 1 + r.IntN(64)
			n = min(n, len(in)-p)
			ch = append(ch, in[p:p+n])
			p += n
		}
		out[fmt.Sprintf("random %d", k)] = ch
	}
	return out
}

func TestMenu(t *testing.T) {
	for _, colour := range []bool{false, true} {
		for sel := range items {
			in := []byte(menu(items, sel, colour))
			for how, chunks := range chunkings(t, in) {
				t.Run(fmt.Sprintf("colour=%v/sel=%d/%s", colour, sel, how), func(t *testing.T) {
					s := New(80, 24)
					feedAll(s, chunks)
					lines := s.Lines()
					if len(lines) != 24 {
						t.Fatalf("%d lines", len(lines))
					}
					if want := "         ┌──────────────┤ [!] Choose language ├────────────┐"; lines[4] != want {
						t.Fatalf("top border\n got %q\nwant %q", lines[4], want)
					}
					if want := "         └" + strings.Repeat("─", 50) + "┘"; lines[15] != want {
						t.Fatalf("bottom border\n got %q\nwant %q", lines[15], want)
					}
					for i, it := range items {
						if !strings.Contains(lines[8+i], " "+it+" ") {
							t.Fatalf("item %q not on row %d: %q", it, 9+i, lines[8+i])
						}
					}
					if !s.Contains("<Go Back>") || !s.Contains("Choose language") || s.Contains("Choose  language") {
						t.Fatalf("Contains is wrong on\n%s", s.Text())
					}
					if got := s.Highlighted(); !reflect.DeepEqual(got, []string{items[sel]}) {
						t.Fatalf("highlighted %q, want [%q]\n%s", got, items[sel], s.Text())
					}
					if row, col := s.Cursor(); row != 8+sel || col != 20 {
						t.Fatalf("cursor at %d,%d, want %d,20", row, col, 8+sel)
					}
					if err := s.Err(); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
}

// Moving the selection repaints two rows only; the highlight must follow.
func TestMenuNavigation(t *testing.T) {
	s := New(80, 24)
	s.Write([]byte(menu(items, 1, true)))
	down := "\x1b[0m\x1b[30;47m" + at(10, 20) + fmt.Sprintf(" %-14s ", "English") +
		"\x1b[37;41m" + at(11, 20) + fmt.Sprintf(" %-14s ", "Deutsch") + "\x1b[30;47m" + at(11, 21)
	s.Write([]byte(down))
	if got := s.Highlighted(); !reflect.DeepEqual(got, []string{"Deutsch"}) {
		t.Fatalf("after down: highlighted %q\n%s", got, s.Text())
	}
	// Tab to the button: the list loses its highlight, the button gains one.
	tab := "\x1b[30;47m" + at(11, 20) + fmt.Sprintf(" %-14s ", "Deutsch") + "\x1b[37;41m" + at(14, 14) + "<Go Back>"
	s.Write([]byte(tab))
	if got := s.Highlighted(); !reflect.DeepEqual(got, []string{"<Go Back>"}) {
		t.Fatalf("after tab: highlighted %q\n%s", got, s.Text())
	}
}

func TestHighlightedIgnoresPlainScreens(t *testing.T) {
	s := New(80, 24)
	s.Write([]byte("\x1b[7mstatus line across the whole width" + strings.Repeat(" ", 80-len("status line across the whole width")) + "\x1b[0m\r\nplain text\r\n"))
	if got := s.Highlighted(); len(got) != 0 {
		t.Fatalf("highlighted %q on a screen without a menu", got)
	}
	// A reverse-video word in a line of text does stand out.
	s.Write([]byte("press \x1b[7mEnter\x1b[0m to go on\r\n"))
	if got := s.Highlighted(); !reflect.DeepEqual(got, []string{"Enter"}) {
		t.Fatalf("highlighted %q", got)
	}
}

// reverseMode mirrors an unexported vt10x constant; fail loudly if vt10x changes it.
func TestReverseVideoBit(t *testing.T) {
	term := vt10x.New(vt10x.WithSize(10, 2))
	term.Write([]byte("a\x1b[7mb\x1b[1mc"))
	if term.Cell(0, 0).Mode&reverseMode != 0 || term.Cell(1, 0).Mode&reverseMode == 0 || term.Cell(2, 0).Mode&reverseMode == 0 {
		t.Fatalf("vt10x reverse bit moved: modes %d %d %d", term.Cell(0, 0).Mode, term.Cell(1, 0).Mode, term.Cell(2, 0).Mode)
	}
	if term.Cell(1, 0).BG != vt10x.DefaultFG {
		t.Fatalf("vt10x no longer swaps colours for reverse video: BG %v", term.Cell(1, 0).BG)
	}
	s := New(10, 2)
	s.Write([]byte("a\x1b[7mb"))
	sp := s.Spans()
	if len(sp) < 2 || sp[0].Text != "a" || sp[0].Reverse || sp[1].Text != "b" || !sp[1].Reverse {
		t.Fatalf("spans %+v", sp)
	}
}

// A character split across writes must be drawn once, whole; vt10x alone drops it.
func TestSplitUTF8(t *testing.T) {
	in := []byte("日本語 ✓ é")
	for i := 1; i < len(in); i++ {
		s := New(20, 2)
		s.Write(in[:i])
		s.Write(in[i:])
		if got := s.Lines()[0]; got != "日本語 ✓ é" {
			t.Fatalf("split at %d: %q", i, got)
		}
	}
	// The bare emulator shows why the carry exists.
	term := vt10x.New(vt10x.WithSize(20, 2))
	term.Write(in[:1])
	term.Write(in[1:])
	if term.Cell(0, 0).Char == '日' {
		t.Fatalf("vt10x now handles split characters; the carry could go")
	}
}

func TestTextAndCursor(t *testing.T) {
	s := New(20, 3)
	s.Write([]byte("hello   \r\nworld\x1b[3;5Hx\x1b]0;my title\x07"))
	if got, want := s.Text(), "hello\nworld\n    x"; got != want {
		t.Fatalf("text %q, want %q", got, want)
	}
	if row, col := s.Cursor(); row != 2 || col != 5 {
		t.Fatalf("cursor %d,%d", row, col)
	}
	if s.Title() != "my title" {
		t.Fatalf("title %q", s.Title())
	}
	if c, r := s.Size(); c != 20 || r != 3 {
		t.Fatalf("size %dx%d", c, r)
	}
	if c, r := New(0, 0).Size(); c != 80 || r != 24 {
		t.Fatalf("default size %dx%d", c, r)
	}
}

func TestReplies(t *testing.T) {
	var replies bytes.Buffer
	s := New(80, 24, WithReplies(&replies))
	s.Write([]byte("\x1b[9999;9999H\x1b[6n"))
	if got := replies.String(); got != "\x1b[24;80R" {
		t.Fatalf("reply %q", got)
	}
}

type panicky struct{ vt10x.Terminal }

func (panicky) Write([]byte) (int, error) { panic("boom") }

func TestEmulatorPanicIsContained(t *testing.T) {
	s := New(80, 24)
	s.Write([]byte("before"))
	real := s.term
	s.term = panicky{real}
	if n, err := s.Write([]byte("x")); n != 1 || err != nil {
		t.Fatalf("Write returned %d, %v", n, err)
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "7 bytes") {
		t.Fatalf("Err %v", err)
	}
	s.term = real
	if !s.Contains("before") {
		t.Fatal("screen lost after a contained panic")
	}
}

func TestWaitForConcurrentFeed(t *testing.T) {
	s := New(80, 24)
	in := []byte(menu(items, 2, true))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := 0; p < len(in); p += 97 {
			s.Write(in[p:min(p+97, len(in))])
			time.Sleep(100 * time.Microsecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	text, err := s.WaitFor(ctx, func(text string) bool {
		return strings.Contains(text, "<Tab> moves")
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Deutsch") {
		t.Fatalf("returned text lacks the menu:\n%s", text)
	}
	<-done
	if got := s.Highlighted(); !reflect.DeepEqual(got, []string{"Deutsch"}) {
		t.Fatalf("highlighted %q", got)
	}
}

func TestWaitForTimeoutShowsScreen(t *testing.T) {
	s := New(40, 5)
	s.Write([]byte("Partitioning disks"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := s.WaitForText(ctx, "Finish the installation")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "Partitioning disks") ||
		!strings.Contains(err.Error(), "Finish the installation") {
		t.Fatalf("error %v", err)
	}
}

// The recorded serial output of the Debian 12 netboot installer booted under QEMU TCG with
// console=ttyS0 (about 40 KB: the kernel log, then the first dialog drawn by newt inside
// GNU screen). The language menu must be readable and its selection known, whatever the
// read boundaries.
func TestDebianInstallerRecording(t *testing.T) {
	in, err := os.ReadFile("testdata/d-i-serial.bin")
	if err != nil {
		t.Fatalf("reading the recording: %v", err)
	}
	for how, chunks := range chunkings(t, in) {
		t.Run(how, func(t *testing.T) {
			s := New(80, 24)
			feedAll(s, chunks)
			for _, want := range []string{"[!!] Select a language", "Choose the language to be used for the installation process.", "Language:", "English", "<Go Back>", "<Tab> moves; <Space> selects; <Enter> activates buttons"} {
				if !s.Contains(want) {
					t.Fatalf("%q not on the screen:\n%s", want, s.Text())
				}
			}
			if s.Contains("Linux version") {
				t.Fatalf("the kernel log should have been cleared by the dialog:\n%s", s.Text())
			}
			if got := s.Highlighted(); !reflect.DeepEqual(got, []string{"English"}) {
				t.Fatalf("highlighted %q, want [English]\n%s", got, s.Text())
			}
			lines := s.Lines()
			if !strings.HasPrefix(lines[4], "  ┌───") || !strings.HasSuffix(lines[17], "───┘") {
				t.Fatalf("dialog box not drawn with line-drawing characters:\n%s", s.Text())
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The emulator must never panic through Write, and never panic at all on what a guest may
// send (a recovered panic is reported by Err, which this target treats as a failure so the
// fuzzer finds vt10x bugs worth guarding).
func FuzzScreen(f *testing.F) {
	f.Add([]byte(menu(items, 1, true)))
	f.Add([]byte("\x1b[5;2r\x1b[99L\x1b[99999M\x1b[?1049h\x1b[99999P"))
	f.Add([]byte("\x1b]4;1;rgb:1/2/3\x07\x1b[38;2;1;2;3m"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := New(20, 6)
		s.Write(in)
		_ = s.Text()
		_ = s.Highlighted()
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// vt10x loops once per unit of a tabulation count; a huge count from a confused guest must
// not stall the drain goroutine.
func TestHugeParametersAreClamped(t *testing.T) {
	for _, in := range []string{
		"ab\x1b[999999999999999999Ix",
		"ab\x1b[0000000000000000000999999999999999999999Zx",
		"ab\x1b[1;999999999999999999999999999999999999999999999999999999Ix",
	} {
		for how, chunks := range chunkings(t, []byte(in)) {
			s := New(20, 2)
			done := make(chan struct{})
			go func() {
				feedAll(s, chunks)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("%q (%s): Write did not return", in, how)
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Clamping must not change what ordinary sequences mean.
	s := New(80, 24)
	s.Write([]byte("\x1b[00012;0005Hx\x1b[0;1mbold\x1b[3;1H\x1b[2Cy\x1b[H\x1b[99999;99999Hz"))
	lines := s.Lines()
	if lines[11] != "    xbold" || lines[2] != "  y" || !strings.HasSuffix(lines[23], "z") || len(lines[23]) != 80 {
		t.Fatalf("clamped screen wrong:\n%s", s.Text())
	}
}

func TestClampFilter(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"\x1b[12345m", "\x1b[9999m"},
		{"\x1b[0m\x1b[00m\x1b[m", "\x1b[0m\x1b[0m\x1b[m"},
		{"\x1b[007;1H", "\x1b[7;1H"},
		{"\x1b[-5X", "\x1b[5X"},
		{"text 123456789 \x1b]0;123456789\x07", "text 123456789 \x1b]0;123456789\x07"},
		{"\x1b[1m123456", "\x1b[1m123456"},
		{"\x1b[38:2:255:0:0m", "\x1b[38:2:255:0:0m"},
		{"\x1b)0\x0eq\x0f", "\x1b(B\x1b(0q\x1b(B"},
		{"\x0eq\x0f", "\x1b(Bq\x1b(B"},
		{"\x1b(0\x1b)B\x0eq\x0fq", "\x1b(0\x1b(0\x1b(Bq\x1b(0q"},
		{"\x1b)0\x0e\x1b(Bq", "\x1b(B\x1b(0\x1b(B\x1b(0q"},
		{"\x1b)0\x0e\x1bcq\x0e", "\x1b(B\x1b(0\x1bcq\x1b(B"},
		{"\x1b%Gok", "\x1b(Bok"},
		{"\x1b Fx", "\x1b(Bx"},
		{"\x1b)\nx", "\x1b(B\nx"},
		{"\x1b(0\x1b* Bx", "\x1b(0\x1b(0x"},
	} {
		for how, chunks := range chunkings(t, []byte(c.in)) {
			var cl filter
			var got []byte
			for _, ch := range chunks {
				got = append(got, cl.filter(ch)...)
			}
			if string(got) != c.want {
				t.Errorf("%q (%s): got %q, want %q", c.in, how, got, c.want)
			}
		}
	}
}

// terminfo's vt100 entry draws boxes with ESC ) 0 once, then SO ... SI; vt10x alone
// ignores both and shows the letters.
func TestLineDrawingThroughG1(t *testing.T) {
	in := []byte("\x1b(B\x1b)0\x0elqqk\x0f\r\n\x0ex\x0f hi \x0ex\x0f\r\n\x0emqqqqqj\x0f lqk")
	want := []string{"┌──┐", "│ hi │", "└─────┘ lqk"}
	for how, chunks := range chunkings(t, in) {
		s := New(20, 3)
		feedAll(s, chunks)
		if got := s.Lines(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %q, want %q", how, got, want)
		}
	}
	// vt10x alone prints the 0 of ESC ) 0 and then the letters.
	term := vt10x.New(vt10x.WithSize(20, 3))
	term.Write(in)
	if term.Cell(0, 0).Char != '0' || term.Cell(1, 0).Char != 'l' {
		t.Fatalf("vt10x now handles ESC ) 0 and SO/SI (cells %q %q); the rewriting could go", term.Cell(0, 0).Char, term.Cell(1, 0).Char)
	}
}
