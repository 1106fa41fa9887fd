package labtest

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

// fakeT is a test whose verdict and cleanups this test controls: it fails when told to,
// and its cleanups run when finish is called, as testing runs them when a test ends.
type fakeT struct {
	testing.TB // the real test, for logging
	name       string
	mu         sync.Mutex
	failed     bool
	cleanups   []func()
}

func newFakeT(t *testing.T, name string) *fakeT { return &fakeT{TB: t, name: name} }

func (f *fakeT) Name() string { return f.name }
func (f *fakeT) Helper()      {}
func (f *fakeT) Fail()        { f.mu.Lock(); f.failed = true; f.mu.Unlock() }
func (f *fakeT) Failed() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.failed }
func (f *fakeT) Errorf(format string, args ...any) {
	f.TB.Logf("fake test %s: "+format, append([]any{f.name}, args...)...)
	f.Fail()
}
func (f *fakeT) FailNow() {
	f.TB.Fatalf("fake test %s: FailNow (a StartT that should have worked failed)", f.name)
}
func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	f.cleanups = append(f.cleanups, fn)
	f.mu.Unlock()
}

// finish runs the cleanups last in, first out.
func (f *fakeT) finish() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// fakeVM boots a simulated guest (fakeguest on the serial pty) instead of QEMU.
func fakeVM(t *testing.T) []Option {
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	require.NoError(t, os.WriteFile(kernel, []byte("not really a kernel"), 0o644))
	return []Option{
		Image(vm.Image{Name: "fake", Kernel: kernel, Profile: shell.Mini}),
		Accel(qemu.AccelTCG), Notes(t.TempDir()), Login(), Captures(lab.CapturesNone),
		Spec(func(s *vm.Spec) {
			s.Launcher, s.Binary = fakeguest.Launcher{Behaviour: fakeguest.Behaviour{Login: "root-shell"}}, "fake-qemu"
		}),
		Timeouts(func(to *vm.Timeouts) {
			to.Login, to.Step = 3*time.Second, 2*time.Second
			to.Stop = qemu.StopTimeouts{Guest: time.Second, Powerdown: 100 * time.Millisecond, Quit: 100 * time.Millisecond, Term: time.Second, Kill: time.Second}
		}),
	}
}

// debugOn is -boot-image-debug with a terminal the test types Enter on.
func debugOn(out io.Writer, enter io.Reader) Option {
	return WithDebug(Debug{OnFailure: true, Out: out, Enter: enter, Wait: time.Hour})
}

// requireKept: the cleanup (done) waits in the debug pause with the console served for
// bootlab attach, until Enter.
func requireKept(t *testing.T, l *lab.Lab, out *fakeguest.Buffer, why string, enter io.Writer, done <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "press Enter here to continue") {
		require.True(t, time.Now().Before(deadline), "the failed test's VM was not kept; pause output: %q", out.String())
		time.Sleep(20 * time.Millisecond)
	}
	require.Contains(t, out.String(), why+": the VM is kept running")
	require.Contains(t, out.String(), "bootlab attach "+l.Dir())
	sock, err := os.Readlink(l.Path(lab.ConsoleSocket))
	require.NoError(t, err, "the console socket is linked into the run directory")
	c, err := net.Dial("unix", sock)
	require.NoError(t, err, "the console is served for bootlab attach")
	c.Close()
	// bootlab capture --running: one connection, one reply line.
	csock, err := os.Readlink(l.Path(lab.CaptureSocket))
	require.NoError(t, err, "the capture socket is linked into the run directory")
	cc, err := net.Dial("unix", csock)
	require.NoError(t, err, "capture --running is served")
	_ = cc.SetReadDeadline(time.Now().Add(20 * time.Second))
	reply, err := bufio.NewReader(cc).ReadString('\n')
	cc.Close()
	require.NoError(t, err, "capture --running answers")
	require.Regexp(t, `^(ok|error) `, reply)
	require.True(t, l.Running(), "the VM is still up while kept")
	select {
	case <-done:
		t.Fatal("the cleanup went on before Enter")
	case <-time.After(100 * time.Millisecond):
	}
	_, err = enter.Write([]byte("\n"))
	require.NoError(t, err)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Enter did not end the pause")
	}
	require.False(t, l.Running(), "the VM is stopped after the pause")
}

func outcome(t *testing.T, l *lab.Lab) runrec.Outcome {
	m, err := runrec.ReadMetadata(l.Dir())
	require.NoError(t, err)
	return m.Outcome
}

// TestStartTKeepsFailedVM: with -boot-image-debug, a test that failed keeps its VM for
// a person before StartT's cleanup stops it, and the run records the failure.
func TestStartTKeepsFailedVM(t *testing.T) {
	var out fakeguest.Buffer
	enterR, enterW := io.Pipe()
	ft := newFakeT(t, "TestBroken")
	l := StartT(ft, append(fakeVM(t), debugOn(&out, enterR))...)
	ft.Errorf("an assertion failed")
	done := make(chan struct{})
	go func() { defer close(done); ft.finish() }()
	requireKept(t, l, &out, "TestBroken failed", enterW, done)
	require.Equal(t, runrec.Fail, outcome(t, l))
}

// TestStartTPassedVMNotKept: the same test passing is not kept: the cleanup stops the
// VM at once (the pause would wait an hour for an Enter nobody types).
func TestStartTPassedVMNotKept(t *testing.T) {
	var out fakeguest.Buffer
	enterR, _ := io.Pipe()
	ft := newFakeT(t, "TestFine")
	l := StartT(ft, append(fakeVM(t), debugOn(&out, enterR))...)
	done := make(chan struct{})
	go func() { defer close(done); ft.finish() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("a passing test's VM was kept: %q", out.String())
	}
	require.Empty(t, out.String(), "no pause message for a passing test")
	require.False(t, l.Running())
	require.Equal(t, runrec.Pass, outcome(t, l))
}

// TestStartTFailedWithoutDebugNotKept: without -boot-image-debug a failure stops the VM.
func TestStartTFailedWithoutDebugNotKept(t *testing.T) {
	ft := newFakeT(t, "TestBrokenNoDebug")
	l := StartT(ft, append(fakeVM(t), WithDebug(Debug{}))...)
	ft.Errorf("an assertion failed")
	ft.finish()
	require.False(t, l.Running())
	require.Equal(t, runrec.Fail, outcome(t, l))
}

// TestSharedVMKeptOnceWhenATestFailed: on a shared VM the keep happens once, at Close,
// naming the tests that failed on it; each test's verdict is in the run record.
func TestSharedVMKeptOnceWhenATestFailed(t *testing.T) {
	var out fakeguest.Buffer
	enterR, enterW := io.Pipe()
	s := NewShared("standard", func(ctx context.Context, l *lab.Lab) error {
		_, err := l.Succeed(ctx, "echo set-up")
		return err
	}, append(fakeVM(t), debugOn(&out, enterR))...)
	a, b := newFakeT(t, "TestA"), newFakeT(t, "TestB")
	la, err := s.Use(a)
	require.NoError(t, err)
	lb, err := s.Use(b)
	require.NoError(t, err)
	require.Same(t, la, lb, "one VM for both")
	b.Errorf("an assertion failed")
	a.finish()
	b.finish()
	require.Empty(t, out.String(), "not kept while tests may still use it")
	require.True(t, la.Running())
	require.Equal(t, []string{"TestB"}, s.Failed())
	done := make(chan struct{})
	go func() { defer close(done); require.NoError(t, s.Close()) }()
	requireKept(t, la, &out, "the shared VM standard (TestB) failed", enterW, done)
	m, err := runrec.ReadMetadata(la.Dir())
	require.NoError(t, err)
	require.Equal(t, runrec.Fail, m.Outcome)
	got := map[string]runrec.Outcome{}
	for _, sc := range m.Scenarios {
		got[sc.Name] = sc.Outcome
	}
	require.Equal(t, map[string]runrec.Outcome{"TestA": runrec.Pass, "TestB": runrec.Fail}, got)
}

// TestSharedVMPassedNotKept: a shared VM all of whose tests passed closes at once.
func TestSharedVMPassedNotKept(t *testing.T) {
	var out fakeguest.Buffer
	enterR, _ := io.Pipe()
	s := NewShared("standard", nil, append(fakeVM(t), debugOn(&out, enterR))...)
	a := newFakeT(t, "TestA")
	l, err := s.Use(a)
	require.NoError(t, err)
	a.finish()
	done := make(chan struct{})
	go func() { defer close(done); require.NoError(t, s.Close()) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("a passing shared VM was kept: %q", out.String())
	}
	require.Empty(t, out.String())
	require.False(t, l.Running())
	require.Equal(t, runrec.Pass, outcome(t, l))
}

// TestPauseAfterLoginPausesPassingTest: -pause-after login pauses after the login
// whatever the verdict, and Enter goes on with the test.
func TestPauseAfterLoginPausesPassingTest(t *testing.T) {
	var out fakeguest.Buffer
	enterR, enterW := io.Pipe()
	ft := newFakeT(t, "TestPaused")
	started := make(chan *lab.Lab, 1)
	go func() {
		started <- StartT(ft, append(fakeVM(t), WithDebug(Debug{PauseAfter: "login", Out: &out, Enter: enterR, Wait: time.Hour}))...)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "press Enter here to continue") {
		require.True(t, time.Now().Before(deadline), "no pause after login: %q", out.String())
		time.Sleep(20 * time.Millisecond)
	}
	require.Contains(t, out.String(), "TestPaused: pause after login: the VM is kept running")
	_, err := enterW.Write([]byte("\n"))
	require.NoError(t, err)
	l := <-started
	got, err := l.Succeed(context.Background(), "echo after")
	require.NoError(t, err, "the shell is the automation's again after the pause")
	require.Equal(t, "after\n", got)
	ft.finish()
	require.Equal(t, runrec.Pass, outcome(t, l))
}

func TestSlugOf(t *testing.T) {
	require.Equal(t, "testframed-channel", slugOf("TestFramed/channel"))
	require.Equal(t, "run", slugOf("///"))
}

// -accel goes through config's one check, before any VM boots.
func TestCheckFlagsRejectsABadAccel(t *testing.T) {
	old := *flagAccel
	*flagAccel = "hvf"
	defer func() { *flagAccel = old }()
	require.ErrorContains(t, CheckFlags(), `--accel must be kvm or tcg, not "hvf"`)
}

func TestCheckFlagsRejectsUnknownStage(t *testing.T) {
	old := *flagPauseAfter
	defer func() { *flagPauseAfter = old }()
	*flagPauseAfter = "kernel"
	require.ErrorContains(t, CheckFlags(), "login, storage, network")
	*flagPauseAfter = "storage"
	require.NoError(t, CheckFlags())
}
