package frame

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func parseChannel(id string, stream []byte, chunk int) *ChannelParser {
	p := NewChannelParser(id)
	for len(stream) > 0 {
		n := chunk
		if n <= 0 || n > len(stream) {
			n = len(stream)
		}
		p.Feed(stream[:n])
		stream = stream[n:]
	}
	return p
}

func TestChannelRoundTripExactBytes(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	cases := map[string][]byte{
		"empty":               {},
		"no trailing newline": []byte("abc"),
		"crlf and cr":         []byte("a\r\nb\rc\n"),
		"every byte value":    all,
		"long line":           bytes.Repeat([]byte("x"), 100000),
		"our markers' bytes":  []byte("\x1eE\x1f\x1eB\x1f\x1eEid1\x1f\x1eEid1:\x1f\x1eEid1:x\x1f\x1eEid1:1234\x1f"),
		"other frames inside": EncodeChannel("id2", 0, []byte("inner")),
	}
	for name, out := range cases {
		t.Run(name, func(t *testing.T) {
			stream := append([]byte("stray bytes"), EncodeChannel("id1", 7, out)...)
			for _, chunk := range []int{0, 1, 2, 3, 5, 77} {
				p := parseChannel("id1", stream, chunk)
				require.True(t, p.Done(), "chunk %d", chunk)
				got, status, err := p.Result()
				require.NoError(t, err)
				require.Equal(t, 7, status, "chunk %d", chunk)
				require.Equal(t, out, got, "chunk %d", chunk)
				require.Equal(t, len("stray bytes"), p.Stray(), "chunk %d", chunk)
			}
		})
	}
}

func TestChannelIgnoresOtherFramesAndLateBytes(t *testing.T) {
	var s bytes.Buffer
	s.Write(EncodeChannel("old-1", 0, []byte("late output of an interrupted command\n")))
	s.Write(ChannelBegin("id3"))
	s.WriteString("fresh")
	s.Write(channelEndPrefix("id3"))
	s.WriteString("255\x1fbackground job noise")
	p := parseChannel("id3", s.Bytes(), 4)
	got, status, err := p.Result()
	require.NoError(t, err)
	require.Equal(t, 255, status)
	require.Equal(t, "fresh", string(got))
	require.Positive(t, p.Stray())
}

func TestChannelIncompleteFrame(t *testing.T) {
	for _, stream := range [][]byte{
		nil,
		[]byte("\x1eBid"),
		append(ChannelBegin("id"), "output"...),
		append(append(ChannelBegin("id"), "output"...), channelEndPrefix("id")...),
		append(append(ChannelBegin("id"), "output"...), append(channelEndPrefix("id"), "25"...)...),
	} {
		p := parseChannel("id", stream, 1)
		require.False(t, p.Done(), "%q", stream)
		_, _, err := p.Result()
		require.Error(t, err)
	}
	p := parseChannel("id", ChannelBegin("id"), 0)
	require.True(t, p.Started())
}

// TestChannelFunctionsInRealShells runs the guest functions in the shells bootlab meets
// (busybox ash, dash, bash) with a plain file standing in for the virtio port, and
// checks that what they write parses back to the exact output and status, and that a
// port that cannot be opened is reported by status rather than aborting the shell.
func TestChannelFunctionsInRealShells(t *testing.T) {
	shells := map[string][]string{"bash": {"bash"}, "dash": {"dash"}, "busybox ash": {"busybox", "sh"}}
	for name, argv := range shells {
		t.Run(name, func(t *testing.T) {
			if _, err := exec.LookPath(argv[0]); err != nil {
				t.Fatalf("%s not found: install it (apt-get install %s)", argv[0], map[string]string{"busybox": "busybox-static"}[argv[0]]+map[string]string{"bash": "bash", "dash": "dash"}[argv[0]])
			}
			dir := t.TempDir()
			port := filepath.Join(dir, "port")
			require.NoError(t, os.WriteFile(port, nil, 0o600))
			// __blc looks in /sys; here the port is opened directly, as __blc would.
			script := ChannelFunctions + "\n" +
				"exec 7>" + port + "\n" +
				"__blf t-1 'printf \"a\\000b\\r\\n\\036E\"; (exit 3)'\n" +
				"__blf t-2 'cd /; pwd'\n" +
				"__blf t-3 'echo \"$PWD\" \"$__s\"'\n" +
				"__blc; echo \"blc=$?\"\n"
			cmd := exec.Command(argv[0], append(argv[1:], "-c", script)...)
			cmd.Env = append(os.Environ(), "LC_ALL=C")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "blc=1", "no port in /sys is status 1, and the shell goes on")
			stream, err := os.ReadFile(port)
			require.NoError(t, err)
			for _, c := range []struct {
				id, out string
				status  int
			}{{"t-1", "a\x00b\r\n\x1eE", 3}, {"t-2", "/\n", 0}, {"t-3", "/ 0\n", 0}} {
				p := parseChannel(c.id, stream, 3)
				require.True(t, p.Done(), "%s: %q", c.id, stream)
				got, status, err := p.Result()
				require.NoError(t, err)
				require.Equal(t, c.out, string(got), c.id)
				require.Equal(t, c.status, status, c.id)
			}
		})
	}
}

func FuzzChannelParser(f *testing.F) {
	f.Add([]byte("hello\n"), []byte("stray"), uint8(2))
	f.Add([]byte("\x1eEfz:\x1f"), []byte{}, uint8(1))
	f.Add([]byte("\x1eEfz:99"), []byte("\x1eBfz\x1f"), uint8(0))
	f.Fuzz(func(t *testing.T, out, before []byte, chunk uint8) {
		if bytes.Contains(out, channelEndPrefix("fz")) || bytes.Contains(before, ChannelBegin("fz")) {
			// Output that forges its own END marker, or a forged BEGIN, is not something
			// a command writes by accident (the id is random per command).
			return
		}
		stream := append(append(append([]byte(nil), before...), EncodeChannel("fz", 42, out)...), before...)
		p := parseChannel("fz", stream, int(chunk))
		if !p.Done() {
			t.Fatalf("a whole frame was not recognised")
		}
		got, status, err := p.Result()
		if err != nil || status != 42 || !bytes.Equal(got, out) {
			t.Fatalf("frame misread: status %d err %v, %q != %q", status, err, got, out)
		}
	})
}

func BenchmarkChannelParser(b *testing.B) {
	out := make([]byte, 1<<20)
	rand.New(rand.NewSource(1)).Read(out)
	enc := EncodeChannel("bench", 0, out)
	b.SetBytes(int64(len(out)))
	for i := 0; i < b.N; i++ {
		p := NewChannelParser("bench")
		for rest := enc; len(rest) > 0; {
			n := 4096
			if n > len(rest) {
				n = len(rest)
			}
			p.Feed(rest[:n])
			rest = rest[n:]
		}
		if !p.Done() {
			b.Fatal("not done")
		}
	}
}
