package bisect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const sampleScript = `# log in and check the kernel
timeout 90s
expect login:
send root
expect "# $" 5s
send-raw "\x03"
expect ready for (input|commands) 2m
run systemctl is-active sshd
assert-output "uname -r" ^6\.12\.
assert-output cat\ /proc/cmdline "console=ttyS0"
`

func TestParseScript(t *testing.T) {
	s, err := ParseScript(strings.NewReader(sampleScript), "check.expect")
	require.NoError(t, err)
	require.Len(t, s.Steps, 8)
	type flat struct {
		Line    int
		Op      string
		Text    string
		Re      string
		Timeout time.Duration
	}
	var got []flat
	for _, st := range s.Steps {
		f := flat{Line: st.Line, Op: st.Op, Text: st.Text, Timeout: st.Timeout}
		if st.Regexp != nil {
			f.Re = st.Regexp.String()
		}
		got = append(got, f)
	}
	require.Equal(t, []flat{
		{3, "expect", "", "login:", 90 * time.Second},
		{4, "send", "root", "", 0},
		{5, "expect", "", "# $", 5 * time.Second},
		{6, "send-raw", "\x03", "", 0},
		{7, "expect", "", "ready for (input|commands)", 2 * time.Minute},
		{8, "run", "systemctl is-active sshd", "", 0},
		{9, "assert-output", "uname -r", `^6\.12\.`, 0},
		{10, "assert-output", `cat\`, `/proc/cmdline "console=ttyS0"`, 0},
	}, got)
}

func TestParseScriptErrorsNameTheLine(t *testing.T) {
	bad := map[string]string{
		"":                              "has no steps",
		"# only a comment":              "has no steps",
		"wait 5s":                       `x:1: unknown step "wait"`,
		"send \"unterminated":           "x:1: send: bad quoted string",
		"send \"a\" b":                  `x:1: send: unexpected "b"`,
		"send-raw":                      "x:1: send-raw: needs text",
		"expect (":                      "x:1: expect: error parsing regexp",
		"expect":                        "x:1: expect: needs a regexp",
		"expect \"x\" soon":             `want a timeout, got "soon"`,
		"expect x -1s":                  "timeout must be positive",
		"\n\nrun":                       "x:3: run: needs a command",
		"assert-output onlycmd":         "x:1: assert-output: want CMD REGEX",
		"assert-output \"a b\" \"c\" d": `unexpected "d"`,
		"timeout soon":                  "x:1: timeout: want a positive duration",
	}
	for text, want := range bad {
		_, err := ParseScript(strings.NewReader(text), "x")
		require.ErrorContains(t, err, want, "script %q", text)
	}
}

// fakeConsole answers Expect from a fixed screen and Run from a table.
type fakeConsole struct {
	screen   string
	commands map[string]struct {
		out    string
		status int
	}
	sent    []string
	sendErr error
}

func (f *fakeConsole) Send(ctx context.Context, text string) error {
	f.sent = append(f.sent, text)
	return f.sendErr
}

func (f *fakeConsole) Expect(ctx context.Context, re *regexp.Regexp) error {
	if re.MatchString(f.screen) {
		return nil
	}
	<-ctx.Done()
	return fmt.Errorf("waiting for %s: %w", re, ctx.Err())
}

func (f *fakeConsole) Run(ctx context.Context, cmd string) ([]byte, int, error) {
	r, ok := f.commands[cmd]
	if !ok {
		return []byte("sh: " + cmd + ": not found\n"), 127, nil
	}
	return []byte(r.out), r.status, nil
}

func TestRunScript(t *testing.T) {
	script := func(text string) *Script {
		s, err := ParseScript(strings.NewReader(text), "t.expect")
		require.NoError(t, err)
		return s
	}
	console := func() *fakeConsole {
		return &fakeConsole{screen: "Debian login: ", commands: map[string]struct {
			out    string
			status int
		}{
			"uname -r":   {"6.12.111+deb12-amd64\n", 0},
			"false":      {"", 1},
			"cat /x":     {"hello\n", 0},
			"systemctl ": {"", 3},
		}}
	}
	ctx := context.Background()

	c := console()
	out, err := RunScript(ctx, script("expect login:\nsend root\nsend-raw \"\\x04\"\nassert-output \"uname -r\" ^6\\.12\\."), c)
	require.NoError(t, err)
	require.Equal(t, Good, out.Verdict)
	require.Equal(t, []string{"root\n", "\x04"}, c.sent)

	out, err = RunScript(ctx, script("run false"), console())
	require.NoError(t, err)
	require.Equal(t, Bad, out.Verdict)
	require.Equal(t, `t.expect:1 run: "false" exited 1: ""`, out.Reason)

	out, err = RunScript(ctx, script(`assert-output "uname -r" ^6\.1\.`), console())
	require.NoError(t, err)
	require.Equal(t, Bad, out.Verdict)
	require.Contains(t, out.Reason, `output of "uname -r" does not match /^6\.1\./: "6.12.111+deb12-amd64"`)

	start := time.Now()
	out, err = RunScript(ctx, script("expect password: 50ms\nsend never"), console())
	require.NoError(t, err)
	require.Equal(t, Bad, out.Verdict)
	require.Equal(t, "t.expect:1 expect: /password:/ not seen within 50ms", out.Reason)
	require.Less(t, time.Since(start), 5*time.Second)

	c = console()
	c.sendErr = fmt.Errorf("console socket closed: %w", ErrInfra)
	out, err = RunScript(ctx, script("send root"), c)
	require.NoError(t, err)
	require.Equal(t, Skip, out.Verdict, "a broken console says nothing about the image")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = RunScript(cctx, script("expect password:"), console())
	require.ErrorIs(t, err, context.Canceled, "an interrupted bisection is not a verdict")
}

func TestPredicateScriptIsStoredWhole(t *testing.T) {
	p := &Predicate{Kind: PredicateScript, ScriptPath: "/x.expect", ScriptText: sampleScript}
	s, err := p.Script()
	require.NoError(t, err)
	require.Len(t, s.Steps, 8)
	_, err = (&Predicate{Kind: PredicateCommand}).Script()
	require.Error(t, err)
}

func TestRunHostCommandExitCodes(t *testing.T) {
	cases := []struct {
		cmd     string
		verdict Verdict
		abort   bool
		reason  string
	}{
		{"exit 0", Good, false, "exited 0"},
		{"echo why; exit 1", Bad, false, `exited 1: "why"`},
		{"exit 124", Bad, false, "exited 124"},
		{"echo no kvm >&2; exit 125", Skip, false, `125 (skip): "no kvm"`},
		{"exit 126", Bad, false, "exited 126"},
		{"no-such-command-bootlab", Bad, false, "exited 127"},
		{"exit 128", "", true, "exited 128"},
		{"exit 255", "", true, "exited 255"},
		{"kill -TERM $$", "", true, "died"},
	}
	for _, tc := range cases {
		t.Run(tc.cmd, func(t *testing.T) {
			dir := t.TempDir()
			out, err := RunHostCommand(context.Background(), tc.cmd, VMEnv{RunDir: dir})
			if tc.abort {
				require.ErrorIs(t, err, ErrAbort)
				require.ErrorContains(t, err, tc.reason)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.verdict, out.Verdict)
			require.Contains(t, out.Reason, tc.reason)
			require.Equal(t, dir, out.RunDir)
			_, err = os.Stat(filepath.Join(dir, "predicate.log"))
			require.NoError(t, err)
		})
	}
}

func TestRunHostCommandSeesTheVM(t *testing.T) {
	dir := t.TempDir()
	env := VMEnv{SSHPort: 2222, SSHUser: "root", SSHKey: "/k/id", ConsoleSocket: "/run/c.sock", QMPSocket: "/run/q.sock",
		RunDir: dir, Index: 3, Attempt: 1,
		Candidate: Candidate{Name: "6.1.0-47", Kernel: "/k/vmlinuz", Initrd: "/k/initrd", Append: "console=ttyS0 quiet"}}
	cmd := `env | grep ^BOOTLAB_ | sort; pwd; test "$BOOTLAB_SSH_PORT" = 2222 && test "$BOOTLAB_APPEND" = "console=ttyS0 quiet"`
	out, err := RunHostCommand(context.Background(), cmd, env)
	require.NoError(t, err)
	require.Equal(t, Good, out.Verdict, out.Reason)
	log, err := os.ReadFile(filepath.Join(dir, "predicate.log"))
	require.NoError(t, err)
	for _, want := range []string{
		"BOOTLAB_SSH_HOST=127.0.0.1", "BOOTLAB_SSH_PORT=2222", "BOOTLAB_SSH_USER=root", "BOOTLAB_SSH_KEY=/k/id",
		"BOOTLAB_CONSOLE_SOCKET=/run/c.sock", "BOOTLAB_QMP_SOCKET=/run/q.sock", "BOOTLAB_RUN_DIR=" + dir,
		"BOOTLAB_CANDIDATE=6.1.0-47", "BOOTLAB_CANDIDATE_INDEX=3", "BOOTLAB_ATTEMPT=1",
		"BOOTLAB_KERNEL=/k/vmlinuz", "BOOTLAB_INITRD=/k/initrd", "\n" + dir + "\n",
	} {
		require.Contains(t, string(log), want)
	}
}

func TestRunHostCommandTimeoutKillsItsChildren(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	// The grandchild would keep the output pipe open for 30 s if only
	// sh were killed.
	_, err := RunHostCommand(ctx, "sleep 30 & sleep 30; wait", VMEnv{RunDir: dir})
	require.True(t, errors.Is(err, context.DeadlineExceeded), "err = %v", err)
	require.Less(t, time.Since(start), 10*time.Second)
}

// The script shown in docs/bisect.md must stay valid.
func TestDocsScriptExampleParses(t *testing.T) {
	doc, err := os.ReadFile("../../docs/bisect.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "```\n# check.expect")
	require.True(t, ok, "docs/bisect.md lost its check.expect example")
	body, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	s, err := ParseScript(strings.NewReader("# check.expect"+body), "docs/bisect.md")
	require.NoError(t, err)
	require.Len(t, s.Steps, 5)
	require.Equal(t, 10*time.Second, s.Steps[2].Timeout)
	require.Equal(t, 90*time.Second, s.Steps[0].Timeout)
}
