package qemu

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// qmpStandIn is a stand-in QEMU in this process: a QMP server on the machine's socket and
// a process that exits on quit (or SIGKILL) and, like a wedged guest, ignores SIGTERM.
type qmpStandIn struct {
	// hang lists commands that get no reply at all (a QEMU stuck on them).
	hang map[string]bool

	mu       sync.Mutex
	commands []string
	conns    int
	exit     chan struct{}
	once     sync.Once
	ln       net.Listener
}

func (f *qmpStandIn) Pid() int    { return os.Getpid() }
func (f *qmpStandIn) Wait() error { <-f.exit; f.ln.Close(); return nil }
func (f *qmpStandIn) Signal(sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		f.die()
	}
	return nil
}
func (f *qmpStandIn) die() { f.once.Do(func() { close(f.exit) }) }

func (f *qmpStandIn) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

func (f *qmpStandIn) Launch(ctx context.Context, binary string, args []string, serial *os.File, stderr io.Writer) (Process, error) {
	sock := ""
	for i, a := range args {
		if a == "-qmp" {
			sock = strings.TrimPrefix(strings.Split(args[i+1], ",")[0], "unix:")
		}
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	f.ln, f.exit = ln, make(chan struct{})
	go func() {
		// QEMU serves one QMP client at a time: the next is accepted when the last
		// one has gone.
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			f.serve(c)
		}
	}()
	return f, nil
}

func (f *qmpStandIn) serve(c net.Conn) {
	defer c.Close()
	io.WriteString(c, `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": ""}, "capabilities": []}}`+"\n")
	// A JSON stream, not lines: go-qemu sends commands without a newline, as QEMU allows.
	dec := json.NewDecoder(c)
	for {
		var cmd struct{ Execute string }
		if dec.Decode(&cmd) != nil {
			return
		}
		f.mu.Lock()
		f.commands = append(f.commands, cmd.Execute)
		f.mu.Unlock()
		if f.hang[cmd.Execute] {
			continue
		}
		io.WriteString(c, `{"return": {}}`+"\n")
		if cmd.Execute == "quit" {
			f.die()
			return
		}
	}
}

func startFake(t *testing.T, f *qmpStandIn) *Machine {
	t.Helper()
	cfg := Config{Binary: "fake-qemu", MemoryMB: 64, Kernel: file(t, "vmlinuz", "k")}
	m, err := Start(context.Background(), cfg, StartOptions{Files: runFiles(t), Launcher: f, EarlyExitWindow: 10 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { m.Kill() })
	return m
}

func stageEnded(r StopReport, s StopStage) string {
	for _, st := range r.Stages {
		if st.Stage == s {
			return st.Ended
		}
	}
	return ""
}

// TestStopQuitsAfterAQMPTimeout: a power button QEMU never answered (the client is then
// broken: a late reply would be taken for the next command's) must not cost the quit.
// The stop reconnects and quits instead of falling through to SIGTERM, which this QEMU
// ignores, and SIGKILL.
func TestStopQuitsAfterAQMPTimeout(t *testing.T) {
	f := &qmpStandIn{hang: map[string]bool{"system_powerdown": true}}
	m := startFake(t, f)
	start := time.Now()
	rep, err := m.StopWith(context.Background(), StopPlan{Timeouts: StopTimeouts{Guest: time.Second, Powerdown: 300 * time.Millisecond,
		Quit: 2 * time.Second, Term: 300 * time.Millisecond, Kill: 2 * time.Second}})
	require.NoError(t, err)
	require.Equal(t, StopQuit, rep.Stage, "stages: %+v", rep.Stages)
	require.Less(t, time.Since(start), 2*time.Second)
	require.Equal(t, []string{"qmp_capabilities", "system_powerdown", "qmp_capabilities", "quit"}, f.seen(), "a second connection for quit")
	require.Contains(t, stageEnded(rep, StopPowerdown), "failed:")
	require.Equal(t, "skipped: no shell to type it into", stageEnded(rep, StopGuest))
}

// TestStopEndsAStageOnEvidence: the guest's poweroff is typed, the console shows it will
// not act (the watcher says so), and the stop moves on at once instead of waiting out
// the guest stage's 30 s; a skipped power button is not pressed; sync runs before quit.
func TestStopEndsAStageOnEvidence(t *testing.T) {
	f := &qmpStandIn{}
	m := startFake(t, f)
	typed := false
	synced := false
	plan := StopPlan{
		Timeouts:      StopTimeouts{Guest: 30 * time.Second, Powerdown: 20 * time.Second, Quit: 2 * time.Second, Term: time.Second, Kill: time.Second},
		Guest:         func(context.Context) error { typed = true; return nil },
		PowerdownSkip: "the profile says the guest ignores it",
		Sync:          func(context.Context) error { synced = true; return nil },
		Watch: func(ctx context.Context, s StopStage) string {
			select {
			case <-time.After(100 * time.Millisecond):
				return "poweroff: not found"
			case <-ctx.Done():
				return ""
			}
		},
	}
	start := time.Now()
	rep, err := m.StopWith(context.Background(), plan)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 3*time.Second, "stages: %+v", rep.Stages)
	require.True(t, typed, "%v", f.seen())
	require.True(t, synced)
	require.Equal(t, StopQuit, rep.Stage)
	require.Equal(t, "refused: poweroff: not found", stageEnded(rep, StopGuest))
	require.Equal(t, "skipped: the profile says the guest ignores it", stageEnded(rep, StopPowerdown))
	require.Equal(t, "done", stageEnded(rep, StopSync))
	require.Equal(t, "QEMU exited", stageEnded(rep, StopQuit))
	require.NotContains(t, f.seen(), "system_powerdown")
}
