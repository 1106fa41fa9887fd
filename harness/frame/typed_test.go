package frame

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"
)

// guestShells are the shells bootlab meets in guests, with how to start each
// interactively (line editor and all) and how to install it when missing.
var guestShells = []struct {
	name    string
	argv    []string
	install string
}{
	{"bash", []string{"bash", "--norc", "--noprofile", "-i"}, "bash"},
	{"dash", []string{"dash", "-i"}, "dash"},
	{"busybox ash", []string{"busybox", "sh", "-i"}, "busybox-static"},
}

// ptyShell is an interactive shell on a real pseudo-terminal in its default (cooked,
// echoing) mode, as a getty leaves a serial console: what the harness types goes
// through the tty line discipline and the shell's line editor.
type ptyShell struct {
	t   *testing.T
	cmd *exec.Cmd
	pty *os.File
	mu  sync.Mutex
	out bytes.Buffer
	eof chan struct{}
}

func startPtyShell(t *testing.T, argv []string, install string, env ...string) *ptyShell {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Fatalf("%s not found: install it (apt-get install %s)", argv[0], install)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TERM=dumb", "LC_ALL=C"}, env...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	require.NoError(t, err)
	s := &ptyShell{t: t, cmd: cmd, pty: f, eof: make(chan struct{})}
	go func() {
		defer close(s.eof)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
		<-s.eof
	})
	// What the harness types into a fresh shell (shell.setupLines), short of the
	// channel functions.
	s.typeLine("stty -echo -onlcr; PS1='P$ '; PS2=''\n")
	s.typeLine(GuestFunctions + "\n")
	s.typeLine(ExitTrap + "\n")
	return s
}

func (s *ptyShell) typeLine(l string) {
	_, err := s.pty.Write([]byte(l))
	require.NoError(s.t, err)
}

func (s *ptyShell) pos() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Len()
}

func (s *ptyShell) since(pos int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.out.Bytes()[pos:]...)
}

// run types cmd as the harness does and returns the framed output and status.
func (s *ptyShell) run(id, cmd string) ([]byte, int, error) {
	lines, err := TypedLines("__bl", id, cmd)
	if err != nil {
		return nil, 0, err
	}
	pos := s.pos()
	for _, l := range lines {
		s.typeLine(l)
	}
	var p *Parser
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		p = NewParser(id)
		if p.Feed(s.since(pos)) {
			return p.Result()
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil, 0, fmt.Errorf("frame %s never ended; terminal output since it was typed: %q", id, s.since(pos))
}

// TestTypedBytesReachTheShellExactly is issue 19 item 6's proof: every byte value from
// 0x01 to 0xff, all of them in one command, and a 6,000-byte random command typed into
// real interactive bash, dash and busybox ash on a pty come out exactly, and a ^U in a
// command no longer erases the line before it (which ran `touch` as root in all three).
func TestTypedBytesReachTheShellExactly(t *testing.T) {
	for _, sh := range guestShells {
		t.Run(sh.name, func(t *testing.T) {
			s := startPtyShell(t, sh.argv, sh.install)
			n := 0
			id := func() string { n++; return fmt.Sprintf("t-%d", n) }

			pwned := filepath.Join(t.TempDir(), "pwned")
			_, status, err := s.run(id(), "x\x15touch "+pwned+" #")
			require.NoError(t, err)
			require.Equal(t, 127, status, "the whole line is one command name, not found")
			require.NoFileExists(t, pwned, "^U erased the line before it and the rest ran")

			// Each byte value in a short command of its own group (a shell or terminal
			// may treat a byte differently at the start, middle or end of a word).
			for b := 1; b <= 0xff; b += 15 {
				var want []byte
				for c := b; c < b+15 && c <= 0xff; c++ {
					want = append(want, byte(c))
				}
				got, status, err := s.run(id(), "printf '%s' "+Quote(string(want)))
				require.NoError(t, err, "bytes %#x-%#x", b, b+14)
				require.Equal(t, 0, status, "bytes %#x-%#x", b, b+14)
				require.Equal(t, want, got, "bytes %#x-%#x", b, b+14)
			}

			all := make([]byte, 0, 255)
			for b := 1; b <= 0xff; b++ {
				all = append(all, byte(b))
			}
			got, _, err := s.run(id(), "printf '%s' "+Quote(string(all)))
			require.NoError(t, err)
			require.Equal(t, all, got)

			rng := rand.New(rand.NewSource(19))
			long := make([]byte, 6000)
			for i := range long {
				long[i] = byte(1 + rng.Intn(255))
			}
			cmd := "printf '%s' " + Quote(string(long))
			lines, err := TypedLines("__bl", "x", cmd)
			require.NoError(t, err)
			require.Greater(t, len(lines), 6, "a 6,000-byte command is typed in pieces")
			got, status, err = s.run(id(), cmd)
			require.NoError(t, err)
			require.Equal(t, 0, status)
			require.Equal(t, long, got)

			// A long printable command takes the same path without the printf step.
			text := bytes.Repeat([]byte("0123456789 'quoted' \\ %s $HOME"), 200)
			got, _, err = s.run(id(), "printf '%s' "+Quote(string(text)))
			require.NoError(t, err)
			require.Equal(t, text, got)

			_, _, err = s.run(id(), "printf '\x00'")
			require.ErrorContains(t, err, "NUL")
		})
	}
}

func TestTypedLinesArePrintableAndShort(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		cmd := make([]byte, rng.Intn(5000))
		for j := range cmd {
			cmd[j] = byte(1 + rng.Intn(255))
		}
		if i%3 == 0 {
			for j := range cmd {
				cmd[j] = byte(0x20 + rng.Intn(0x5f))
			}
		}
		lines, err := TypedLines("__bl", "abc-1", string(cmd))
		require.NoError(t, err)
		var d TypedDecoder
		for k, l := range lines {
			require.LessOrEqual(t, len(l), MaxTypedLine)
			require.True(t, len(l) > 0 && l[len(l)-1] == '\n')
			require.True(t, Printable(l[:len(l)-1]), "line %q", l)
			fn, id, got, handled, done := d.Line(l[:len(l)-1])
			if len(lines) == 1 {
				break
			}
			require.True(t, handled, "line %q", l)
			if k == len(lines)-1 {
				require.True(t, done)
				require.Equal(t, "__bl", fn)
				require.Equal(t, "abc-1", id)
				require.Equal(t, string(cmd), got)
			}
		}
	}
}

// A short printable command is one line, as before: the hot path stays cheap.
func TestShortPrintableCommandIsOneLine(t *testing.T) {
	lines, err := TypedLines("__blf", "7", "echo 'hi'")
	require.NoError(t, err)
	require.Equal(t, []string{"__blf 7 'echo '\\''hi'\\'''\n"}, lines)
}

// TestGuestFunctionsInRealShells: the exit trap reports `exit 3` on the terminal with
// its status (a subshell's exit is not reported); a missing /tmp is avoided by another
// directory; and with no writable directory at all the frame ends at once with the
// shell's own error messages instead of never (issue 18).
func TestGuestFunctionsInRealShells(t *testing.T) {
	for _, sh := range guestShells {
		t.Run(sh.name, func(t *testing.T) {
			s := startPtyShell(t, sh.argv, sh.install, "TMPDIR=/nonexistent")
			got, status, err := s.run("a", "echo fallback; (exit 4)")
			require.NoError(t, err, "a missing $TMPDIR falls back to /dev/shm")
			require.Equal(t, "fallback\n", string(got))
			require.Equal(t, 4, status)
			require.NotContains(t, string(s.since(0)), "@@BLX", "a subshell's exit is not the shell's")

			s.typeLine("__bd=; __bds='/nonexistent2 /proc/nope'\n")
			_, _, err = s.run("b", "touch /tmp/should-not-run")
			var se *SetupError
			require.ErrorAs(t, err, &se)
			require.Contains(t, se.Guest, "/nonexistent/.bl.")
			require.Contains(t, se.Guest, "/proc/nope/.bl.")
			require.Regexp(t, `(?i)no such file|nonexistent`, se.Guest, "the shell's own words")

			s.typeLine("__bds=/dev/shm\n")
			pos := s.pos()
			lines, err := TypedLines("__bl", "c", "exit 3")
			require.NoError(t, err)
			s.typeLine(lines[0])
			select {
			case <-s.eof:
			case <-time.After(5 * time.Second):
				t.Fatalf("the shell did not exit; terminal: %q", s.since(pos))
			}
			m := ExitMarker.FindSubmatch(s.since(pos))
			require.NotNil(t, m, "no exit marker in %q", s.since(pos))
			require.Equal(t, "3", string(m[1]))
		})
	}
}

// FuzzTypedLines: whatever the command, every typed line is printable ASCII of at most
// MaxTypedLine bytes, and the lines decode back to the command (NUL is refused).
func FuzzTypedLines(f *testing.F) {
	f.Add("echo hi")
	f.Add("x\x15touch /tmp/pwned #")
	f.Add("-n '%s\\n' \xff")
	f.Fuzz(func(t *testing.T, cmd string) {
		lines, err := TypedLines("__bl", "abcdef-1", cmd)
		if bytes.IndexByte([]byte(cmd), 0) >= 0 {
			if err == nil {
				t.Fatal("NUL accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var d TypedDecoder
		for i, l := range lines {
			if len(l) > MaxTypedLine || l[len(l)-1] != '\n' || !Printable(l[:len(l)-1]) {
				t.Fatalf("line %q", l)
			}
			if len(lines) == 1 {
				if l != "__bl abcdef-1 "+Quote(cmd)+"\n" {
					t.Fatalf("one-line form %q", l)
				}
				return
			}
			_, _, got, handled, done := d.Line(l[:len(l)-1])
			if !handled || done != (i == len(lines)-1) {
				t.Fatalf("line %d %q not understood", i, l)
			}
			if done && got != cmd {
				t.Fatalf("decoded %q, want %q", got, cmd)
			}
		}
	})
}
