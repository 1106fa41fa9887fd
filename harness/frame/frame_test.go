package frame

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

func parseAll(t testing.TB, id string, stream []byte, chunk int) *Parser {
	p := NewParser(id)
	feedChunks(stream, chunk, func(b []byte) { p.Feed(b) })
	return p
}

// feedChunks hands stream to feed in pieces of chunk bytes (all at once if chunk <= 0),
// as reads from a serial line or socket would.
func feedChunks(stream []byte, chunk int, feed func([]byte)) {
	for len(stream) > 0 {
		n := chunk
		if n <= 0 || n > len(stream) {
			n = len(stream)
		}
		feed(stream[:n])
		stream = stream[n:]
	}
}

func TestRoundTripExactBytes(t *testing.T) {
	cases := map[string][]byte{
		"empty":               {},
		"no trailing newline": []byte("abc"),
		"crlf and cr":         []byte("a\r\nb\rc\n"),
		"binary":              {0, 1, 2, 0x1b, '[', '6', 'n', 0xff, 0x9b, '\n'},
		"long line":           bytes.Repeat([]byte("x"), 10000),
		"looks like marker":   []byte("@@BLE:other:0:-@@\n@@BLB:id1@@\n"),
	}
	for name, out := range cases {
		t.Run(name, func(t *testing.T) {
			stream := append([]byte("prompt$ "), Encode("id1", 7, out)...)
			for _, chunk := range []int{0, 1, 3, 77} {
				p := parseAll(t, "id1", stream, chunk)
				require.True(t, p.Done(), "chunk %d", chunk)
				got, status, err := p.Result()
				require.NoError(t, err)
				require.Equal(t, 7, status)
				require.Equal(t, out, got)
			}
		})
	}
}

func TestIgnoresEchoAndOtherFrames(t *testing.T) {
	var s bytes.Buffer
	// The typed invocation echoed back, a stale frame from an earlier command, then ours.
	s.WriteString(Invocation("id2", "printf '%s%s\\n' '@@BL' \"E:id2:0:-:0@@\""))
	s.Write(Encode("id1", 0, []byte("stale\n")))
	s.Write(Encode("id2", 3, []byte("fresh\n")))
	p := parseAll(t, "id2", s.Bytes(), 5)
	got, status, err := p.Result()
	require.NoError(t, err)
	require.Equal(t, 3, status)
	require.Equal(t, "fresh\n", string(got))
}

func TestKernelLinesSplicedOut(t *testing.T) {
	out := bytes.Repeat([]byte("0123456789abcdef"), 40)
	enc := Encode("k", 0, out)
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		pos := r.Intn(len(enc))
		noise := "[   12.345678] md: noise here\n"
		if i%2 == 1 {
			noise = "[   12.345678] md: noise here\n\n" // and a blank line after it
		}
		noisy := append(append(append([]byte(nil), enc[:pos]...), []byte(noise)...), enc[pos:]...)
		p := parseAll(t, "k", noisy, 1+r.Intn(50))
		require.True(t, p.Done(), "insert at %d", pos)
		got, status, err := p.Result()
		require.NoError(t, err, "insert at %d", pos)
		require.Equal(t, 0, status)
		require.Equal(t, out, got)
		if pos < len(enc)-1 {
			// Noise after the END marker belongs to whatever comes next.
			require.Len(t, p.Noise(), 1, "insert at %d", pos)
		}
	}
}

func TestCorruptionDetected(t *testing.T) {
	out := bytes.Repeat([]byte("payload "), 100)
	enc := Encode("c", 0, out)
	// A broadcast written into the middle of a base64 line cannot be told apart from
	// data by shape; the checksum must catch it.
	i := bytes.Index(enc, []byte("\n")) + 10
	bad := append(append(append([]byte(nil), enc[:i]...), []byte("AAAA")...), enc[i:]...)
	p := parseAll(t, "c", bad, 0)
	require.True(t, p.Done())
	_, _, err := p.Result()
	require.True(t, errors.Is(err, ErrCorrupt), "got %v", err)
}

func TestQuote(t *testing.T) {
	require.Equal(t, `'it'\''s'`, Quote("it's"))
}

func FuzzParser(f *testing.F) {
	f.Add([]byte("hello\n"), []byte("[ 1.0] x\n"), uint16(3), uint8(2))
	f.Add([]byte{}, []byte("Broadcast\n"), uint16(0), uint8(1))
	f.Fuzz(func(t *testing.T, out, noise []byte, at uint16, chunk uint8) {
		if bytes.Contains(noise, []byte("@")) {
			// Kernel lines and broadcasts never carry our markers; noise that forges a
			// whole frame is not something a console produces.
			return
		}
		enc := Encode("fz", 1, out)
		pos := int(at) % (len(enc) + 1)
		stream := append(append(append([]byte(nil), enc[:pos]...), noise...), enc[pos:]...)
		p := parseAll(t, "fz", stream, int(chunk))
		if !p.Done() {
			return // noise destroyed the END marker: the shell retransmits or times out
		}
		got, status, err := p.Result()
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		// Whatever the noise, an accepted frame is exactly what the guest sent.
		if status != 1 || !bytes.Equal(got, out) {
			t.Fatalf("accepted a wrong frame: status %d, %q != %q", status, got, out)
		}
	})
}

func BenchmarkParser(b *testing.B) {
	out := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB of output
	enc := Encode("bench", 0, out)
	b.SetBytes(int64(len(out)))
	for i := 0; i < b.N; i++ {
		p := NewParser("bench")
		for off := 0; off < len(enc); off += 4096 {
			end := off + 4096
			if end > len(enc) {
				end = len(enc)
			}
			p.Feed(enc[off:end])
		}
		if got, _, err := p.Result(); err != nil || len(got) != len(out) {
			b.Fatalf("parse failed: %v", err)
		}
	}
}
