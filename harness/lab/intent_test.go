package lab

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/shell"
)

// TestIntentMethods: the façade's command and state methods on a simulated guest.
func TestIntentMethods(t *testing.T) {
	ctx := context.Background()
	l, err := startFake(ctx, fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"}))
	require.NoError(t, err)
	defer l.Close(ctx, nil)

	_, err = l.Succeed(ctx, "echo early")
	require.ErrorContains(t, err, "Login first", "commands need the verified root shell")
	_, err = l.Login(ctx)
	require.NoError(t, err)
	require.NotNil(t, l.shell())

	out, err := l.Succeed(ctx, "echo hello")
	require.NoError(t, err)
	require.Equal(t, "hello\n", out)
	_, err = l.Succeed(ctx, "false")
	var ee *shell.ExitError
	require.ErrorAs(t, err, &ee, "Succeed on a non-zero status")

	_, err = l.Fail(ctx, "false")
	require.NoError(t, err, "Fail on a non-zero status")
	_, err = l.Fail(ctx, "true")
	require.ErrorContains(t, err, "exited 0, a failure was expected")

	_, st, err := l.Status(ctx, "false")
	require.NoError(t, err)
	require.Equal(t, 1, st)

	serial, err := l.SerialLog()
	require.NoError(t, err)
	require.NotEmpty(t, serial, "serial.log holds what the guest printed")
	require.Equal(t, shell.Mini.Name, l.Profile().Name)
	require.Empty(t, l.SSHAddr(), "no SSH forward was asked for")
	_, err = l.SSH(ctx, "root", nil, nil)
	require.ErrorContains(t, err, "no SSH port forward")
	require.NotZero(t, l.Pid())

	// A snapshot copies metadata and evidence as they are now.
	ev := l.Path(rundiff.EvidenceDir)
	require.NoError(t, os.MkdirAll(ev, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(ev, "units.txt"), []byte("a\n"), 0o644))
	snap, err := l.Snapshot("clean")
	require.NoError(t, err)
	require.Equal(t, l.Dir()+"-clean", snap)
	require.FileExists(t, filepath.Join(snap, runrec.MetadataFile))
	require.FileExists(t, filepath.Join(snap, filepath.FromSlash(rundiff.EvidenceDir), "units.txt"))

	require.True(t, l.Running())
	_, err = l.PowerOff(ctx)
	require.NoError(t, err)
	require.False(t, l.Running())
	select {
	case <-l.Exited():
	default:
		t.Fatal("Exited is not closed after PowerOff")
	}
}

// TestScenarioAfterCloseIsNotRecorded: a closed run's record is final.
func TestScenarioAfterCloseIsNotRecorded(t *testing.T) {
	ctx := context.Background()
	l, err := startFake(ctx, fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"}))
	require.NoError(t, err)
	l.Scenario("TestBefore", runrec.Pass, nil, 0)
	require.NoError(t, l.Close(ctx, nil))
	l.Scenario("TestAfter", runrec.Fail, nil, 0)
	m := readMeta(t, l.Dir())
	require.Len(t, m.Scenarios, 1)
	require.Equal(t, "TestBefore", m.Scenarios[0].Name)
}

// TestWaitsReportOnTheRunsProgressLine: a wait through the façade shows its elapsed
// time on Options.Progress (a scenario's test log, bootlab run's terminal) without the
// caller putting a line in its context.
func TestWaitsReportOnTheRunsProgressLine(t *testing.T) {
	ctx := context.Background()
	cfg := fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"})
	var out fakeguest.Buffer
	cfg.Progress = &out
	l, err := startFake(ctx, cfg)
	require.NoError(t, err)
	defer l.Close(ctx, nil)
	_, err = l.Login(ctx)
	require.NoError(t, err)

	// The simulated guest runs no shell loops, so the wait fails at once; what matters
	// here is that its end reached the run's line.
	require.Error(t, l.WaitFile(ctx, "/"))
	t.Logf("progress:\n%s", out.String())
	require.Regexp(t, `/.*: failed after \d`, out.String(), "the wait's end on the run's progress line")
}

// TestSaveStateRefusesAShellUnsafePath: QEMU runs the exec: migration through /bin/sh,
// so a state path that a shell would split or expand is refused before QEMU sees it.
func TestSaveStateRefusesAShellUnsafePath(t *testing.T) {
	ctx := context.Background()
	l, err := startFake(ctx, fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"}))
	require.NoError(t, err)
	defer l.Close(ctx, nil)
	for _, p := range []string{"/tmp/a b", "/tmp/x;rm -rf /", "/tmp/$(id)"} {
		require.ErrorContains(t, l.SaveState(ctx, p), "only letters, digits", p)
	}
}

// TestDoorMethods: what lab offers instead of its console, shell and channel - typing
// and expecting on the console, the screen model, the transport - on a simulated guest.
func TestDoorMethods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := startFake(ctx, fakeSpec(t, fakeguest.Behaviour{Login: "root-shell"}))
	require.NoError(t, err)
	defer l.Close(context.Background(), nil)
	require.Empty(t, l.Transport(), "no shell before Login")
	_, err = l.Login(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, l.Transport())

	scr, stop := l.WatchScreen(80, 24)
	defer stop()
	// The fake guest answers an unknown command the way a shell does.
	from, err := l.Type(ctx, "typed-42\n")
	require.NoError(t, err)
	require.GreaterOrEqual(t, l.ConsoleMark(), from)
	text, end, err := l.ExpectConsole(ctx, from, regexp.MustCompile(`typed-42: not found`))
	require.NoError(t, err)
	require.Equal(t, "typed-42: not found", text)
	require.Greater(t, end, from)
	require.NoError(t, scr.WaitForText(ctx, "typed-42: not found"), "the screen model sees what the console draws")
	require.NoError(t, l.ConsoleErr())
	require.False(t, l.LastOutput().IsZero())
	require.False(t, ConsoleGone(err))
}
