package runrec

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 18: a `bootlab run` killed with SIGKILL left metadata.json "running" forever.
// A real child process creates a run and is killed; the next reader of the notes
// directory marks the run abandoned and enters it in the ledger once.
func TestKilledRunIsMarkedAbandoned(t *testing.T) {
	notes := t.TempDir()
	ledger := DefaultLedger(notes)
	require.NoError(t, AppendLedger(ledger, LedgerEntry{Time: t0, Slug: "earlier", Outcome: Pass}))
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "RUNREC_HELPER=create-run", "RUNREC_NOTES="+notes)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	dir, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "helper did not create its run")
	dir = strings.TrimSpace(dir)

	// Alive: a reader leaves it alone.
	entries, _, err := ReadLedger(ledger)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	m, err := Settle(dir)
	require.NoError(t, err)
	require.Equal(t, Running, m.Outcome)
	require.NotNil(t, m.Owner)
	require.Equal(t, cmd.Process.Pid, m.Owner.PID)
	require.NotZero(t, m.Owner.StartTicks)

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	entries, _, err = ReadLedger(ledger)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	assert.Equal(t, Abandoned, entries[1].Outcome)
	assert.Equal(t, dir, entries[1].Dir)
	m, err = ReadMetadata(dir)
	require.NoError(t, err)
	assert.Equal(t, Abandoned, m.Outcome)
	assert.Contains(t, m.Error, "bootlab process "+strconv.Itoa(cmd.Process.Pid)+" is gone")

	// Once: later readers find it settled.
	marked, err := SettleAll(notes)
	require.NoError(t, err)
	assert.Empty(t, marked)
	entries, _, err = ReadLedger(ledger)
	require.NoError(t, err)
	assert.Len(t, entries, 2)
}

// The pid alone cannot be trusted: a recycled pid is a different process (another
// start time), and after a reboot every process is gone. Runs that cannot be judged
// (no owner recorded, another host) are left as they are.
func TestOwnerGoneJudgesPidReuseAndReboot(t *testing.T) {
	notes := t.TempDir()
	r, err := Create(notes, "mine", t0)
	require.NoError(t, err)
	edit := func(fn func(o *Owner)) {
		t.Helper()
		require.NoError(t, r.Update(func(m *Metadata) {
			o := *currentOwner()
			fn(&o)
			m.Owner, m.Outcome, m.Error = &o, Running, ""
		}))
	}
	settle := func() Metadata {
		t.Helper()
		m, err := Settle(r.Dir)
		require.NoError(t, err)
		return m
	}
	assert.Equal(t, Running, settle().Outcome, "this very process owns it")

	edit(func(o *Owner) { o.StartTicks++ })
	m := settle()
	assert.Equal(t, Abandoned, m.Outcome)
	assert.Contains(t, m.Error, "now belongs to another process")

	edit(func(o *Owner) { o.BootID = "00000000-0000-0000-0000-000000000000" })
	m = settle()
	assert.Equal(t, Abandoned, m.Outcome)
	assert.Contains(t, m.Error, "rebooted")

	edit(func(o *Owner) { o.Hostname = "some-other-host"; o.PID = 1 << 30 })
	assert.Equal(t, Running, settle().Outcome, "another host's process cannot be looked up here")

	require.NoError(t, r.Update(func(m *Metadata) { m.Owner = nil }))
	assert.Equal(t, Running, settle().Outcome, "a run without an owner cannot be judged")

	// Finished runs are never touched, whatever their owner.
	edit(func(o *Owner) { o.PID = 1 << 30 })
	require.NoError(t, r.Finish(Pass, "", t0))
	assert.Equal(t, Pass, settle().Outcome)
	_, err = os.Stat(filepath.Join(notes, LedgerFile))
	assert.True(t, os.IsNotExist(err), "no ledger is created where there was none")
}

// Several commands reading the notes directory at once mark a dead run once, and
// enter it in the ledger once.
func TestConcurrentSettlersEnterTheRunOnce(t *testing.T) {
	notes := t.TempDir()
	ledger := DefaultLedger(notes)
	require.NoError(t, AppendLedger(ledger, LedgerEntry{Time: t0, Slug: "earlier", Outcome: Pass}))
	r, err := Create(notes, "dead", t0)
	require.NoError(t, err)
	require.NoError(t, r.Update(func(m *Metadata) { m.Owner.PID = 1 << 30 }))
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Settle(r.Dir)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	entries, _, err := ReadLedger(ledger)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "the abandoned run is in the ledger exactly once")
}
