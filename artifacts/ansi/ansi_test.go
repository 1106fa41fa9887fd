package ansi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

type tcase struct {
	name   string
	in     string
	want   string
	events []EventKind
	max    int // MaxSequence, 0 for the default
}

var cases = []tcase{
	{name: "plain ascii", in: "Welcome to NixOS 24.11 (x86_64)\n\tlogin: ", want: "Welcome to NixOS 24.11 (x86_64)\n\tlogin: "},
	{name: "empty", in: "", want: ""},

	// CSI
	{name: "sgr", in: "\x1b[1;31mred\x1b[0m plain", want: "red plain"},
	{name: "sgr 256 and truecolor", in: "\x1b[38;5;196ma\x1b[48;2;1;2;3mb\x1b[m", want: "ab"},
	{name: "sgr colon subparams", in: "\x1b[4:3mcurly\x1b[58:2::255:0:0mx", want: "curlyx"},
	{name: "bracketed paste off", in: "\x1b[?2004l# ", want: "# "},
	{name: "bracketed paste on and alt screen", in: "\x1b[?2004h\x1b[?1049h\x1b[?25lX\x1b[?25h", want: "X"},
	{name: "cursor moves and erase", in: "\x1b[H\x1b[2J\x1b[10;20Hhi\x1b[K\x1b[3A\x1b[1B", want: "hi"},
	{name: "finals stripansi misses", in: "\x1b[31Xa\x1b[2@b\x1b[5Sc\x1b[3dd\x1b[se\x1b[uf", want: "abcdef"},
	{name: "csi with intermediates", in: "\x1b[0 qa\x1b[!pb\x1b[1\"qc", want: "abc"},
	{name: "csi private gt and eq", in: "\x1b[>0ca\x1b[=3hb", want: "ab"},
	{name: "8-bit csi", in: "\x9b31mred\x9b0m", want: "red"},
	{name: "8-bit csi spelt in utf-8", in: "\xc2\x9b31mred", want: "red"},
	{name: "newline inside csi is executed", in: "\x1b[3\n1mX", want: "\nX"},
	{name: "esc inside csi starts over", in: "\x1b[31\x1b[32mX", want: "X"},
	{name: "can aborts csi", in: "\x1b[31\x18mX", want: "mX"},
	{name: "sub aborts csi", in: "\x1b[31\x1amX", want: "mX"},
	{name: "del ignored in csi", in: "\x1b[3\x7f1mX", want: "X"},
	{name: "non-ascii byte abandons csi", in: "\x1b[31é", want: "é"},

	// OSC
	{name: "osc title bel", in: "\x1b]0;root@host: ~\x07text", want: "text"},
	{name: "osc title st", in: "\x1b]0;title\x1b\\text", want: "text"},
	{name: "osc 8-bit st", in: "\x1b]2;title\x9ctext", want: "text"},
	{name: "osc 8-bit introducer", in: "\x9d0;title\x07text", want: "text"},
	{name: "osc hyperlink", in: "\x1b]8;;http://example.com/a?b=c\x07LINK\x1b]8;;\x07 after", want: "LINK after"},
	{name: "osc utf-8 title containing 0x9c", in: "\x1b]0;\xc4\x9c\xe2\x80\x9c\x07text", want: "text"},
	{name: "osc esc not st starts over", in: "\x1b]0;title\x1b[31mX", want: "X"},
	{name: "osc can aborts", in: "\x1b]0;title\x18X", want: "X"},
	{name: "osc colour query", in: "\x1b]11;?\x1b\\ok", want: "ok"},
	{name: "bash prompt with title", in: "\x1b]0;root@nixos: ~\x07\x1b[1;31m[root@nixos:~]#\x1b[0m ", want: "[root@nixos:~]# "},

	// DCS, SOS, PM, APC
	{name: "dcs", in: "a\x1bP1$r0m\x1b\\b", want: "ab"},
	{name: "dcs with bel inside", in: "a\x1bPq#0;2;0;0;0\x07~~\x1b\\b", want: "ab"},
	{name: "dcs 8-bit", in: "a\x90payload\x9cb", want: "ab"},
	{name: "sos", in: "a\x1bXstart of string\x1b\\b", want: "ab"},
	{name: "pm", in: "a\x1b^privacy\x1b\\b", want: "ab"},
	{name: "apc", in: "a\x1b_Gf=100;AAAA\x1b\\b", want: "ab"},
	{name: "apc 8-bit", in: "a\x9fpayload\x9cb", want: "ab"},

	// Two-byte ESC and ESC with intermediates.
	{name: "save restore cursor", in: "\x1b7a\x1b8b", want: "ab"},
	{name: "keypad modes", in: "\x1b=a\x1b>b", want: "ab"},
	{name: "reset", in: "\x1bcclear", want: "clear"},
	{name: "index next line reverse", in: "\x1bDa\x1bEb\x1bMc", want: "abc"},
	{name: "single shifts", in: "\x1bNa\x1bOb", want: "ab"},
	{name: "stray st", in: "a\x1b\\b", want: "ab"},
	{name: "charset designation", in: "\x1b(0lqk\x1b(B\x1b)Bx\x1b*0y\x1b+Bz", want: "lqkxyz"},
	{name: "dec alignment", in: "\x1b#8ok", want: "ok"},
	{name: "select utf-8", in: "\x1b%Gok\x1b%@", want: "ok"},
	{name: "esc esc", in: "\x1b\x1b[31mok", want: "ok"},
	{name: "newline inside esc is executed", in: "\x1b\nok", want: "\nk"}, // ESC o ends the sequence

	// C1 controls and UTF-8.
	{name: "utf-8 survives", in: "héllo — ✓ 𝄞 日本 Ĝ", want: "héllo — ✓ 𝄞 日本 Ĝ"},
	{name: "c1 singles dropped", in: "a\x84b\x85c\x8dd\x8ee\x9cf", want: "abcdef"},
	{name: "c1 spelt in utf-8 dropped", in: "a\xc2\x85b\xc2\x80c", want: "abc"},
	{name: "nbsp is text", in: "a\xc2\xa0b", want: "a\xc2\xa0b"},
	{name: "invalid bytes dropped", in: "\xff\xfe\xc0\xc1abc\xa0\xbf", want: "abc"},
	{name: "truncated sequence dropped", in: "\xe2\x82x", want: "x"},
	{name: "truncated sequence continuation is c1", in: "\xe2\x9b31mX", want: "X"},
	{name: "surrogate is not utf-8", in: "\xed\xa0\x80x", want: "x"},
	{name: "overlong is not utf-8", in: "\xe0\x80\xafx", want: "x"},
	{name: "beyond U+10FFFF is not utf-8", in: "\xf5\x80\x80\x80x", want: "x"},
	{name: "broken sequence 0x90 is dcs", in: "\xf4\x90\x80\x80x\x1b\\y", want: "y"},
	{name: "lead byte then esc", in: "\xc3\x1b[1mx", want: "x"},

	// C0 controls.
	{name: "bel nul del dropped", in: "a\x07b\x00c\x7fd", want: "abcd"},
	{name: "backspace dropped", in: "ab\bc", want: "abc"},
	{name: "spinner", in: "|\b/\b-\b\\\bdone", want: "|/-\\done"},
	{name: "vt ff dropped", in: "a\x0bb\x0cc", want: "abc"},

	// CR handling.
	{name: "crlf", in: "a\r\nb\r\n", want: "a\nb\n"},
	{name: "cr cr lf", in: "a\r\r\nb\r\r\n", want: "a\nb\n"},
	{name: "lone cr is a line break", in: "10%\r20%\r30%\n", want: "10%\n20%\n30%\n"},
	{name: "systemd redraw", in: "[  *** ] A start job is running (1s)\r\x1b[K[  OK  ] Started X.\r\n", want: "[  *** ] A start job is running (1s)\n[  OK  ] Started X.\n"},
	{name: "cr escape lf", in: "a\r\x1b[K\nb", want: "a\nb"},
	{name: "trailing cr flushed as lf", in: "prompt\r", want: "prompt\n"},
	{name: "cr then tab", in: "a\r\tb", want: "a\n\tb"},
	{name: "cr then utf-8", in: "a\r✓", want: "a\n✓"},
	{name: "lf cr", in: "a\n\rb", want: "a\n\nb"},

	// Queries.
	{name: "dsr", in: "\x1b7\x1b[9999;9999H\x1b[6n\x1b8login: ", want: "login: ", events: []EventKind{CursorPositionQuery}},
	{name: "dec dsr", in: "\x1b[?6nx", want: "x", events: []EventKind{DECCursorPositionQuery}},
	{name: "status query", in: "\x1b[5nx", want: "x", events: []EventKind{StatusQuery}},
	{name: "device attributes", in: "\x1b[cx\x1b[0cy", want: "xy", events: []EventKind{DeviceAttributesQuery, DeviceAttributesQuery}},
	{name: "not queries", in: "\x1b[>cx\x1b[16n\x1b[6 n\x1b[66ny", want: "xy"},
	{name: "8-bit dsr", in: "\x9b6nx", want: "x", events: []EventKind{CursorPositionQuery}},

	// Bounds.
	{name: "unterminated osc bounded", in: "\x1b]0;" + strings.Repeat("A", 20) + "tail", want: "AAAAAAtail", max: 16, events: []EventKind{Overflow}},
	{name: "unterminated dcs bounded", in: "\x1bP" + strings.Repeat("B", 10), want: "BB", max: 8, events: []EventKind{Overflow}},
	{name: "long csi bounded", in: "\x1b[" + strings.Repeat("1;", 10) + "mX", want: "1;mX", max: 18, events: []EventKind{Overflow}},
	{name: "default bound", in: "\x1b]" + strings.Repeat("x", DefaultMaxSequence+3), want: "xxx", events: []EventKind{Overflow}},
	{name: "exactly at bound", in: "\x1b]" + strings.Repeat("x", 8) + "\x07ok", want: "ok", max: 9},
}

// run feeds in as the given chunks and returns the output and the events.
func run(t testing.TB, c tcase, chunks [][]byte) (string, []Event) {
	t.Helper()
	var evs []Event
	n := Normalizer{MaxSequence: c.max, OnEvent: func(e Event) { evs = append(evs, e) }}
	var out []byte
	for _, ch := range chunks {
		out = append(out, n.Write(ch)...)
	}
	out = append(out, n.Flush()...)
	return string(out), evs
}

func splitAt(p []byte, cuts []int) [][]byte {
	var chunks [][]byte
	prev := 0
	for _, c := range cuts {
		chunks = append(chunks, p[prev:c])
		prev = c
	}
	return append(chunks, p[prev:])
}

func byteByByte(p []byte) [][]byte {
	chunks := make([][]byte, len(p))
	for i := range p {
		chunks[i] = p[i : i+1]
	}
	return chunks
}

func randomCuts(r *rand.Rand, n int) []int {
	if n == 0 {
		return nil
	}
	k := r.IntN(6)
	cuts := make([]int, k)
	for i := range cuts {
		cuts[i] = r.IntN(n + 1)
	}
	for i := 1; i < len(cuts); i++ { // sort, tiny
		for j := i; j > 0 && cuts[j] < cuts[j-1]; j-- {
			cuts[j], cuts[j-1] = cuts[j-1], cuts[j]
		}
	}
	return cuts
}

func TestNormalizer(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.in)
			whole, evs := run(t, c, [][]byte{in})
			if whole != c.want {
				t.Fatalf("whole: got %q, want %q", whole, c.want)
			}
			var kinds []EventKind
			for _, e := range evs {
				kinds = append(kinds, e.Kind)
			}
			if fmt.Sprint(kinds) != fmt.Sprint(c.events) {
				t.Fatalf("events: got %v, want %v", kinds, c.events)
			}
			check := func(how string, chunks [][]byte) {
				got, gevs := run(t, c, chunks)
				if got != c.want {
					t.Fatalf("%s: got %q, want %q", how, got, c.want)
				}
				if fmt.Sprint(gevs) != fmt.Sprint(evs) {
					t.Fatalf("%s: events %v, want %v", how, gevs, evs)
				}
			}
			check("byte by byte", byteByByte(in))
			r := rand.New(rand.NewPCG(1, uint64(len(c.in))))
			for i := 0; i < 50; i++ {
				cuts := randomCuts(r, len(in))
				check(fmt.Sprintf("split at %v", cuts), splitAt(in, cuts))
			}
		})
	}
}

// Every CSI final byte ends the sequence, with and without private parameters.
func TestEveryCSIFinal(t *testing.T) {
	for f := byte(0x40); f <= 0x7e; f++ {
		for _, params := range []string{"", "1", "?25", "1;2", ">4;1"} {
			in := "a\x1b[" + params + string(f) + "b"
			if got := Strip(in); got != "ab" {
				t.Errorf("%q: got %q, want %q", in, got, "ab")
			}
		}
	}
}

// Every two-byte ESC sequence ends at its second byte.
func TestEveryEscFinal(t *testing.T) {
	for f := byte(0x30); f <= 0x7e; f++ {
		switch f {
		case '[', ']', 'P', 'X', '^', '_':
			continue // introducers, covered elsewhere
		}
		in := "a\x1b" + string(f) + "b"
		if got := Strip(in); got != "ab" {
			t.Errorf("%q: got %q, want %q", in, got, "ab")
		}
	}
}

func TestEventOffsets(t *testing.T) {
	var evs []Event
	n := Normalizer{OnEvent: func(e Event) { evs = append(evs, e) }}
	in := "abc\x1b[6ndef\x1b[6n"
	out := string(n.Write([]byte(in[:5]))) + string(n.Write([]byte(in[5:])))
	if out != "abcdef" {
		t.Fatalf("output %q", out)
	}
	want := []Event{{CursorPositionQuery, 7, 3}, {CursorPositionQuery, 14, 6}}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", evs, want)
	}
}

func TestReply(t *testing.T) {
	for _, c := range []struct {
		k    EventKind
		want string
	}{
		{CursorPositionQuery, "\x1b[24;80R"},
		{DECCursorPositionQuery, "\x1b[?24;80;1R"},
		{StatusQuery, "\x1b[0n"},
		{DeviceAttributesQuery, "\x1b[?6c"},
		{Overflow, ""},
	} {
		if got := string(Event{Kind: c.k}.Reply(24, 80)); got != c.want {
			t.Errorf("%v: reply %q, want %q", c.k, got, c.want)
		}
	}
	if got := string(Event{Kind: CursorPositionQuery}.Reply(0, 123)); got != "\x1b[1;123R" {
		t.Errorf("row 0 should clamp to 1: %q", got)
	}
}

// The returned slice must not be reused by the next Write: the console keeps it.
func TestWriteResultIsOwned(t *testing.T) {
	var n Normalizer
	a := n.Write([]byte("first"))
	n.Write([]byte("second"))
	if string(a) != "first" {
		t.Fatalf("first result overwritten: %q", a)
	}
}

// checkInvariants is shared by the fuzz target and the random test.
func checkInvariants(t testing.TB, in []byte, cut1, cut2 int) {
	whole, _ := run(t, tcase{}, [][]byte{in})
	if strings.IndexByte(whole, esc) >= 0 {
		t.Fatalf("ESC in output %q of %q", whole, in)
	}
	if !utf8.ValidString(whole) {
		t.Fatalf("invalid UTF-8 output %q of %q", whole, in)
	}
	for _, r := range whole {
		if r >= 0x80 && r <= 0x9f {
			t.Fatalf("C1 control U+%04X in output %q of %q", r, whole, in)
		}
		if r < 0x20 && r != '\n' && r != '\t' || r == del {
			t.Fatalf("control %q in output %q of %q", r, whole, in)
		}
	}
	if len(whole) > len(in) {
		t.Fatalf("output longer than input: %q from %q", whole, in)
	}
	if cut1 > cut2 {
		cut1, cut2 = cut2, cut1
	}
	split, _ := run(t, tcase{}, splitAt(in, []int{cut1, cut2}))
	if split != whole {
		t.Fatalf("split at %d,%d gives %q, whole gives %q (input %q)", cut1, cut2, split, whole, in)
	}
	plainIn := true
	for _, b := range in {
		if !plain(b) {
			plainIn = false
			break
		}
	}
	if plainIn && whole != string(in) {
		t.Fatalf("plain input changed: %q -> %q", in, whole)
	}
}

func FuzzNormalizer(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c.in), uint16(len(c.in)/3), uint16(len(c.in)/2))
	}
	f.Add(bytes.Repeat([]byte("\x1b]"), 3000), uint16(1), uint16(4000))
	f.Fuzz(func(t *testing.T, in []byte, a, b uint16) {
		if len(in) == 0 {
			checkInvariants(t, in, 0, 0)
			return
		}
		checkInvariants(t, in, int(a)%(len(in)+1), int(b)%(len(in)+1))
	})
}

// A deterministic slice of what the fuzzer does, so `go test` alone exercises the
// invariants on inputs biased towards escape bytes.
func TestInvariantsRandom(t *testing.T) {
	alphabet := []byte("\x1b\x9b\x9c\x9d\x90[]()#;?0123456789mnHJK\\\x07\x18\r\n\t abcP_^X\xc2\xc4\xe2\x80\x9f\xff")
	r := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 20000; i++ {
		in := make([]byte, r.IntN(40))
		for j := range in {
			in[j] = alphabet[r.IntN(len(alphabet))]
		}
		checkInvariants(t, in, r.IntN(len(in)+1), r.IntN(len(in)+1))
	}
}

func benchInput() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, "[  %d.%06d] virtio_blk virtio1: [vda] 41943040 512-byte logical blocks (21.5 GB/20.0 GiB)\r\n", i/1000, i%1000)
		fmt.Fprintf(&b, "\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39msystemd-networkd.service\x1b[0m - Network Configuration.\r\n")
		fmt.Fprintf(&b, "\x1b]0;root@nixos: ~\x07\x1b[?2004h\x1b[1;31m[root@nixos:~]#\x1b[0m ls ✓\r\r\n")
	}
	return b.Bytes()
}

func BenchmarkNormalizerMixed(b *testing.B) {
	in := benchInput()
	b.SetBytes(int64(len(in)))
	var n Normalizer
	for b.Loop() {
		for i := 0; i < len(in); i += 4096 {
			n.Write(in[i:min(i+4096, len(in))])
		}
	}
}

func BenchmarkNormalizerMixedAppend(b *testing.B) {
	in := benchInput()
	b.SetBytes(int64(len(in)))
	var n Normalizer
	buf := make([]byte, 0, 4097)
	for b.Loop() {
		for i := 0; i < len(in); i += 4096 {
			buf = n.Append(buf[:0], in[i:min(i+4096, len(in))])
		}
	}
}

func TestAppendReusesBuffer(t *testing.T) {
	var n Normalizer
	buf := make([]byte, 0, 64)
	out := n.Append(buf, []byte("a\x1b[1mb\r"))
	out = n.Append(out, []byte("\nc"))
	if string(out) != "ab\nc" || &out[0] != &buf[:1][0] {
		t.Fatalf("Append gave %q (reallocated: %v)", out, &out[0] != &buf[:1][0])
	}
}

func BenchmarkNormalizerPlain(b *testing.B) {
	in := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog 0123456789.\n"), 1<<14)
	b.SetBytes(int64(len(in)))
	var n Normalizer
	for b.Loop() {
		for i := 0; i < len(in); i += 4096 {
			n.Write(in[i:min(i+4096, len(in))])
		}
	}
}

// A real stream: the Debian 12 installer booted under QEMU with console=ttyS0 (the kernel
// log with CR LF, then a newt dialog inside GNU screen: cursor moves, colours, ESC ( 0
// line drawing, ESC ( B). Recorded for the screen package, see docs/console.md.
func TestDebianInstallerStream(t *testing.T) {
	raw, err := os.ReadFile("../../harness/screen/testdata/d-i-serial.bin")
	if err != nil {
		t.Fatalf("reading the recording: %v", err)
	}
	var evs []Event
	n := Normalizer{OnEvent: func(e Event) { evs = append(evs, e) }}
	whole := string(n.Write(raw)) + string(n.Flush())
	for _, want := range []string{
		"\n[    0.000000] Command line: console=ttyS0,115200n8\n",
		"Select a language",
		"Choose the language to be used for the installation process.",
		"<Tab> moves; <Space> selects; <Enter> activates buttons",
	} {
		if !strings.Contains(whole, want) {
			t.Errorf("normalised stream lacks %q", want)
		}
	}
	if !strings.HasPrefix(whole, "[    0.000000] Linux version 6.1.0-") {
		t.Errorf("stream starts %q", whole[:60])
	}
	if strings.ContainsAny(whole, "\r\x1b") || len(evs) != 0 {
		t.Errorf("CR or ESC left, or unexpected events %v", evs)
	}
	r := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 20; i++ {
		got, _ := run(t, tcase{}, splitAt(raw, randomCuts(r, len(raw))))
		if got != whole {
			t.Fatalf("split run differs from whole run")
		}
	}
	got, _ := run(t, tcase{}, byteByByte(raw))
	if got != whole {
		t.Fatal("byte-by-byte run differs from whole run")
	}
}
