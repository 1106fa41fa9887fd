package ansi

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/acarl005/stripansi"
)

// On the sequences the stripansi regex does handle, both must agree. The text between
// sequences starts with a space or punctuation because the regex lets a final byte be
// a letter or digit and would otherwise eat the first letter of the text (see below).
func TestAgreesWithStripansi(t *testing.T) {
	seqs := []string{
		"\x1b[0m", "\x1b[m", "\x1b[1;31m", "\x1b[38;5;196m", "\x1b[H", "\x1b[2J", "\x1b[K",
		"\x1b[10;20H", "\x1b[?25l", "\x1b[?25h", "\x1b[?2004l", "\x1b[?2004h", "\x1b[?1049h",
		"\x1b[3A", "\x1b[12C", "\x1b[6n", "\x1b[24;80R", "\x1b[?7l", "\x1b(B",
		"\x1b)0", "\x1bc", "\x1bM", "\x1b7", "\x1b8", "\x1b=", "\x1b>", "\x1b[1;24r",
	}
	texts := []string{" login: ", "-- text --", ", and ", ".\n", " [  OK  ] Started", "\t# ", " ✓ ünïcode ", ""}
	r := rand.New(rand.NewPCG(3, 5))
	for i := 0; i < 2000; i++ {
		var b strings.Builder
		for j := r.IntN(12); j >= 0; j-- {
			if r.IntN(2) == 0 {
				b.WriteString(seqs[r.IntN(len(seqs))])
			} else {
				b.WriteString(texts[r.IntN(len(texts))])
			}
		}
		in := b.String()
		if got, want := Strip(in), stripansi.Strip(in); got != want {
			t.Fatalf("%q: ours %q, stripansi %q", in, got, want)
		}
	}
}

// Cases stripansi gets wrong. Each pins stripansi's actual output, so if a future
// version fixes one this test says so, and shows ours is right.
func TestStripansiGetsWrong(t *testing.T) {
	for _, c := range []struct {
		name, in, stripansi, ours string
	}{
		{"osc title eats first letter", "\x1b]0;root@host: ~\x07text", "oot@host: ~\x07text", "text"},
		{"osc title ended by st", "\x1b]0;title\x1b\\text", "itle\x1b\\text", "text"},
		{"osc 8 hyperlink leaks url", "\x1b]8;;http://x.org/\x07link\x1b]8;;\x07", "ttp://x.org/\x07link", "link"},
		{"private = parameter", "\x1b[=3hok", "3hok", "ok"},
		{"csi X final leaks", "\x1b[31Xtext", "Xtext", "text"},
		{"csi @ final leaks", "\x1b[2@text", "@text", "text"},
		{"csi s u left whole", "\x1b[sA\x1b[u", "\x1b[sA\x1b[u", "A"},
		{"colon sub-parameters", "\x1b[4:3mx", ":3mx", "x"},
		{"digit final eats next letter", "\x1b7text", "ext", "text"},
		{"charset then letter", "\x1b(0lqk", "qk", "lqk"},
		{"8-bit csi", "\x9b31mred", "\x9b31mred", "red"},
		{"dcs payload leaks", "\x1bP1$r0m\x1b\\ok", "1$r0m\x1b\\ok", "ok"},
		{"esc % G", "\x1b%Gok", "\x1b%Gok", "ok"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := stripansi.Strip(c.in); got != c.stripansi {
				t.Errorf("stripansi now gives %q (pinned %q)", got, c.stripansi)
			}
			if got := Strip(c.in); got != c.ours {
				t.Errorf("ours %q, want %q", got, c.ours)
			}
		})
	}
}

// A regex applied per read cannot handle a sequence split across reads: the first part is
// removed (digits count as a final byte) and the rest leaks. The streaming state machine
// keeps the state between reads.
func TestStripansiSplitSequences(t *testing.T) {
	for _, c := range []struct {
		name      string
		chunks    []string
		stripansi string // per-chunk stripansi, concatenated
		ours      string
	}{
		{"bracketed paste off split", []string{"\x1b[?20", "04l# "}, "04l# ", "# "},
		{"sgr split in parameters", []string{"\x1b[1;3", "1mred"}, "1mred", "red"},
		{"sgr split after esc", []string{"ok\x1b", "[0m done"}, "ok\x1b[0m done", "ok done"},
		{"title split", []string{"\x1b]0;root@ho", "st\x07# "}, "oot@host\x07# ", "# "},
	} {
		t.Run(c.name, func(t *testing.T) {
			var theirs, ours strings.Builder
			var n Normalizer
			for _, ch := range c.chunks {
				theirs.WriteString(stripansi.Strip(ch))
				ours.Write(n.Write([]byte(ch)))
			}
			ours.Write(n.Flush())
			if theirs.String() != c.stripansi {
				t.Errorf("stripansi per chunk now gives %q (pinned %q)", theirs.String(), c.stripansi)
			}
			if ours.String() != c.ours {
				t.Errorf("ours %q, want %q", ours.String(), c.ours)
			}
		})
	}
}
