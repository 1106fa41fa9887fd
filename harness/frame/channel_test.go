package frame

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func parseChannel(id string, stream []byte, chunk int) *ChannelParser {
	p := NewChannelParser(id)
	feedChunks(stream, chunk, func(b []byte) { p.Feed(b) })
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
		"our markers' bytes":  []byte("\x1eE\x1f\x1eB\x1f\x1eEa1b2c3-1\x1f\x1eEa1b2c3-1:\x1f\x1eEa1b2c3-1:x\x1f\x1eEa1b2c3-1:1234\x1f"),
		"foreign-looking ids": []byte("\x1eEnot-an-id:0\x1f\x1eEa1b2c3:0\x1f"),
	}
	for name, out := range cases {
		t.Run(name, func(t *testing.T) {
			stream := EncodeChannel("a1b2c3-1", 7, out)
			for _, chunk := range []int{0, 1, 2, 3, 5, 77} {
				p := parseChannel("a1b2c3-1", stream, chunk)
				require.True(t, p.Done(), "chunk %d", chunk)
				got, status, err := p.Result()
				require.NoError(t, err)
				require.Equal(t, 7, status, "chunk %d", chunk)
				require.Equal(t, out, got, "chunk %d", chunk)
				require.Zero(t, p.Stray(), "chunk %d", chunk)
			}
		})
	}
}

// An interrupted command's late output and END arrive after the next command was typed:
// they are dropped, as is whatever follows the END (a background job's output).
func TestChannelDropsLateFramesAndTrailingBytes(t *testing.T) {
	var s bytes.Buffer
	s.Write(EncodeChannel("0be39b-4", 130, []byte("late output of an interrupted command\n")))
	s.WriteString("fresh")
	s.Write(channelEndPrefix("0be39b-5"))
	s.WriteString("255\x1fbackground job noise")
	for _, chunk := range []int{0, 1, 4} {
		p := parseChannel("0be39b-5", s.Bytes(), chunk)
		got, status, err := p.Result()
		require.NoError(t, err)
		require.Equal(t, 255, status)
		require.Equal(t, "fresh", string(got))
		require.Equal(t, s.Len()-len("fresh")-len(channelEndPrefix("0be39b-5"))-len("255\x1f"), p.Stray())
	}
}

func TestChannelIncompleteFrame(t *testing.T) {
	for _, stream := range [][]byte{
		nil,
		[]byte("output"),
		append([]byte("output"), channelEndPrefix("id")...),
		append([]byte("output"), append(channelEndPrefix("id"), "25"...)...),
		append([]byte("output"), append(channelEndPrefix("id"), "25x\x1f"...)...),
	} {
		p := parseChannel("id", stream, 1)
		require.False(t, p.Done(), "%q", stream)
		require.Equal(t, len(stream), p.Received())
		_, _, err := p.Result()
		require.Error(t, err)
	}
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
				"__bn=abcdef; exec 7>" + port + " 6</dev/null\n" +
				"__blf 1 'printf \"a\\000b\\r\\n\\036E\"; (exit 3)'\n" +
				"__blf 2 'cd /; pwd'\n" +
				"__blf 3 'echo \"$PWD\"; false'\n" +
				"__blf 4 'read -r x; echo \"read=$?\"'\n" +
				"__blf 5 'ls /proc/self/fd'\n" +
				"printf 'shell-still-has-7\\n' >&7\n" +
				"__blc; echo \"blc=$?\"\n"
			cmd := exec.Command(argv[0], append(argv[1:], "-c", script)...)
			cmd.Env = append(os.Environ(), "LC_ALL=C")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "blc=1", "no port in /sys is status 1, and the shell goes on")
			stream, err := os.ReadFile(port)
			require.NoError(t, err)
			require.Contains(t, string(stream), "shell-still-has-7", "the shell keeps the port open after a command")
			fds, _, err := parseChannel("abcdef-5", stream, 0).Result()
			require.NoError(t, err)
			require.Contains(t, strings.Fields(string(fds)), "2")
			require.NotContains(t, strings.Fields(string(fds)), "6", "the command does not inherit the /dev/null fd")
			require.NotContains(t, strings.Fields(string(fds)), "7", "the command does not inherit the port")
			for _, c := range []struct {
				id, out string
				status  int
			}{{"abcdef-1", "a\x00b\r\n\x1eE", 3}, {"abcdef-2", "/\n", 0}, {"abcdef-3", "/\n", 1}, {"abcdef-4", "read=1\n", 0}} {
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
	f.Add([]byte("\x1eEabcdef-1:\x1f"), []byte{}, uint8(1))
	f.Add([]byte("\x1eEabcdef-1:99"), []byte("\x1eEabcdef-0:1\x1f"), uint8(0))
	f.Fuzz(func(t *testing.T, out, after []byte, chunk uint8) {
		const id = "abcdef-1"
		if bytes.Contains(out, channelEndPrefix(id)) || anyEnd.Match(out) || bytes.Contains(after, channelEndPrefix(id)) {
			// Output that forges an END marker is not something a command writes by
			// accident (the ids are random per shell).
			return
		}
		// A late frame of an interrupted command first, the frame, then a background
		// job's bytes.
		stream := append(EncodeChannel("abcdef-0", 3, after), EncodeChannel(id, 42, out)...)
		stream = append(stream, after...)
		p := parseChannel(id, stream, int(chunk))
		if !p.Done() {
			t.Fatalf("a whole frame was not recognised")
		}
		got, status, err := p.Result()
		if err != nil || status != 42 || !bytes.Equal(got, out) {
			t.Fatalf("frame misread: status %d err %v, %q != %q", status, err, got, out)
		}
		if p.Stray() != len(stream)-len(EncodeChannel(id, 42, out)) {
			t.Fatalf("stray count %d", p.Stray())
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
		feedChunks(enc, 4096, func(b []byte) { p.Feed(b) })
		if !p.Done() {
			b.Fatal("not done")
		}
	}
}

// The exit trap's marker on the port says the shell running the command has ended,
// whatever the chunking; another shell's nonce is not ours.
func TestChannelExitMarker(t *testing.T) {
	stream := []byte("partial output\x1eXffffff:9\x1f\x1eXabcdef:3\x1f")
	for _, chunk := range []int{0, 1, 2, 5} {
		p := parseChannel("abcdef-4", stream, chunk)
		require.False(t, p.Done())
		st, ok := p.Exited()
		require.True(t, ok, "chunk %d", chunk)
		require.Equal(t, 3, st)
	}
	p := parseChannel("abcdef-4", []byte("\x1eXffffff:9\x1f\x1eXabcdef:3"), 0)
	_, ok := p.Exited()
	require.False(t, ok, "an unfinished marker or another shell's is not an exit")
}
