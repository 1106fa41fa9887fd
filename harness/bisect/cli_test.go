package bisect

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// shellProber stands in for the harness: it "boots" nothing and runs the
// predicate command with the candidate in the environment, which is how
// the real prober will call RunHostCommand once a VM is up.
type shellProber struct {
	pred  *Predicate
	mu    sync.Mutex
	calls int
}

func (s *shellProber) UsePredicate(p *Predicate) error {
	if p.Kind != PredicateCommand {
		return fmt.Errorf("shellProber only runs host commands, not %s", p.Kind)
	}
	s.pred = p
	return nil
}

func (s *shellProber) Probe(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	return RunHostCommand(ctx, s.pred.Command, VMEnv{RunDir: runDir, Candidate: c, Attempt: attempt})
}

func writeList(t *testing.T, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "candidates.txt")
	var b strings.Builder
	b.WriteString("# synthetic series\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "v%02d kernel=/k/vmlinuz initrd=/k/initrd-v%02d append=\"console=ttyS0 v=%d\"\n", i, i, i)
	}
	require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
	return p
}

func runMain(t *testing.T, p Prober, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, p, &out, &errb)
	return code, out.String(), errb.String()
}

// The regression is in v11: the predicate reads the candidate's initrd
// name from the environment, as a real one would read a sysfs attribute.
const v11Predicate = `n=${BOOTLAB_INITRD##*-v}; test "$n" -lt 11`

func TestMainFindsTheFirstBadWithARealShellPredicate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	sp := &shellProber{}
	code, out, errs := runMain(t, sp, "--candidates", writeList(t, 16), "--dir", dir, "--parallel", "3", "--run", v11Predicate)
	require.Equal(t, ExitFound, code, "stdout:\n%s\nstderr:\n%s", out, errs)
	require.Contains(t, out, "bisect found: first bad: v11; last good: v10")
	require.Contains(t, errs, `msg="probe result" candidate=v11`, "progress is logged by default")
	require.LessOrEqual(t, sp.calls, 2+3*ceilLog(4, 15))
	require.Contains(t, out, filepath.Join(dir, "probes", "011-v11-a0"))
	require.FileExists(t, filepath.Join(dir, "report.html"))
	require.FileExists(t, filepath.Join(dir, "probes", "011-v11-a0", "predicate.log"))

	code, out, _ = runMain(t, nil, "replay", dir)
	require.Equal(t, ExitFound, code)
	require.Contains(t, out, `predicate command "n=${BOOTLAB_INITRD##*-v}; test \"$n\" -lt 11"`)
	require.Contains(t, out, "done (found)")
}

func TestMainResumeUsesTheLoggedPredicate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	list := writeList(t, 20)
	ctx, cancel := context.WithCancel(context.Background())
	interrupting := &interruptingProber{shellProber: shellProber{}, after: 3, cancel: cancel}
	var out, errb bytes.Buffer
	code := Main(ctx, []string{"--candidates", list, "--dir", dir, "--run", v11Predicate}, interrupting, &out, &errb)
	require.Equal(t, ExitError, code)
	require.Contains(t, errb.String(), "continue with: bootlab bisect --resume "+dir)

	sp := &shellProber{}
	code, o, e := runMain(t, sp, "--resume", dir)
	require.Equal(t, ExitFound, code, "stdout:\n%s\nstderr:\n%s", o, e)
	require.Equal(t, v11Predicate, sp.pred.Command, "the predicate comes from the log")
	require.Contains(t, o, "first bad: v11")
	require.Contains(t, o, "(from log)")
	ref, err := Run(context.Background(), memConfig(20, 1, 0), &fakeProber{firstBad: 11})
	require.NoError(t, err)
	require.Equal(t, len(ref.Probes), interrupting.calls-1+sp.calls, "only the interrupted probe ran twice")
}

type interruptingProber struct {
	shellProber
	after  int
	cancel context.CancelFunc
}

func (p *interruptingProber) Probe(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
	if p.calls+1 == p.after {
		p.calls++
		p.cancel()
		return Outcome{}, ctx.Err()
	}
	return p.shellProber.Probe(ctx, c, attempt, runDir)
}

func TestMainExitCodes(t *testing.T) {
	list := writeList(t, 8)
	code, out, errs := runMain(t, &shellProber{}, "--candidates", list, "--dir", filepath.Join(t.TempDir(), "b"), "--run", "exit 1")
	require.Equal(t, ExitEndpoints, code)
	require.Contains(t, errs, "first candidate v00 is bad")
	require.Contains(t, out, "bisect endpoints-invalid")

	// v03 cannot be tested, v04 is the first bad: ambiguous.
	pred := `case $BOOTLAB_CANDIDATE in v03) exit 125;; v0[0-2]) exit 0;; *) exit 1;; esac`
	code, out, _ = runMain(t, &shellProber{}, "--candidates", list, "--dir", filepath.Join(t.TempDir(), "b"), "--run", pred)
	require.Equal(t, ExitAmbiguous, code)
	require.Contains(t, out, "first bad is one of v03, v04: v03 could not be tested")
	require.Contains(t, out, "skip v03")

	code, _, errs = runMain(t, &shellProber{}, "--candidates", list, "--dir", filepath.Join(t.TempDir(), "b"), "--run", "exit 200")
	require.Equal(t, ExitError, code)
	require.Contains(t, errs, "exited 200 (>127 aborts")
}

func TestMainUsageErrors(t *testing.T) {
	list := writeList(t, 4)
	script := filepath.Join(t.TempDir(), "s.expect")
	require.NoError(t, os.WriteFile(script, []byte("expect (\n"), 0o644))
	cases := []struct {
		args []string
		p    Prober
		want string
	}{
		{[]string{"--run", "true"}, &shellProber{}, "give the candidates exactly one way"},
		{[]string{"--candidates", list, "--run", "true", "a.iso"}, &shellProber{}, "give the candidates exactly one way"},
		{[]string{"--candidates", list, "--run", "true", "--scenario", "boot"}, &shellProber{}, "give one predicate"},
		{[]string{"--candidates", list}, &shellProber{}, "give a predicate"},
		{[]string{"--candidates", list, "--scenario", "boot"}, &shellProber{}, "shellProber only runs host commands"},
		{[]string{"--candidates", list, "--run", "true"}, &fakeProber{}, "this prober takes no predicate"},
		{[]string{"--candidates", list, "--script", script}, &shellProber{}, "s.expect:1: expect: error parsing regexp"},
		{[]string{"--resume", "x", "--run", "true"}, &shellProber{}, "--resume takes the candidates, predicate and settings from the log"},
		{[]string{"--candidates", list, "--parallel", "0", "--run", "true"}, &shellProber{}, "--parallel must be at least 1"},
		{[]string{"--candidates", list, "--flaky", "sometimes", "--run", "true"}, &shellProber{}, `--flaky must be "bad" or "majority"`},
		{[]string{"--candidates", list, "--run", "true"}, nil, "no prober configured"},
		{[]string{"replay"}, nil, "usage:"},
		{[]string{"a.iso", "b.iso", "--run", "true"}, &shellProber{}, `flags go before the candidate arguments ("--run" came after one)`},
		{[]string{"--bogus"}, &shellProber{}, "flag provided but not defined"},
	}
	for _, tc := range cases {
		code, _, errs := runMain(t, tc.p, tc.args...)
		require.Equal(t, ExitUsage, code, "%v: %s", tc.args, errs)
		require.Contains(t, errs, tc.want, "%v", tc.args)
	}
	code, _, errs := runMain(t, nil, "replay", filepath.Join(t.TempDir(), "none"))
	require.Equal(t, ExitError, code)
	require.Contains(t, errs, "opening bisect log")
}

// scriptProber records the predicate it was given, as the harness will.
type scriptProber struct {
	fakeProber
	pred *Predicate
}

func (s *scriptProber) UsePredicate(p *Predicate) error { s.pred = p; return nil }

func TestMainScriptPredicateAndDirLoader(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"c10", "c02", "c01", "c00", "c03"} {
		touch(t, filepath.Join(root, "images", v, "bzImage"), "k")
	}
	script := filepath.Join(root, "check.expect")
	touch(t, script, sampleScript)
	sp := &scriptProber{fakeProber: fakeProber{firstBad: 2}}
	code, out, errs := runMain(t, sp, "--candidates-dir", filepath.Join(root, "images"), "--append", "console=ttyS0",
		"--dir", filepath.Join(root, "b"), "--script", script, "--retries", "1")
	require.Equal(t, ExitFound, code, errs)
	require.Contains(t, out, "first bad: c02; last good: c01")
	require.Equal(t, PredicateScript, sp.pred.Kind)
	require.Equal(t, sampleScript, sp.pred.ScriptText)
	s, err := sp.pred.Script()
	require.NoError(t, err)
	require.Len(t, s.Steps, 8)
	// Every tested candidate ran twice with --retries 1.
	require.Equal(t, 0, len(sp.calls)%2)
	require.NotContains(t, out, "flake rate", "a steady predicate shows no flake rate")
}

// Main parses args the way cmd/bootlab does (without its VM flags) and calls
// ReplayMain or Execute: the tests drive the whole command line through it.
func Main(ctx context.Context, args []string, p Prober, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "replay" {
		return ReplayMain(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("bootlab bisect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f Flags
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitFound
		}
		return ExitUsage
	}
	return Execute(ctx, f, fs.Args(), p, stdout, stderr)
}
