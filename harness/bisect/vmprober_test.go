package bisect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type fakeVM struct {
	*fakeConsole
	port     int
	closed   int
	closeErr error
	mu       *sync.Mutex
}

func (v *fakeVM) Env() VMEnv { return VMEnv{SSHPort: v.port, ConsoleSocket: "/run/console.sock"} }

func (v *fakeVM) Close(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed++
	return v.closeErr
}

// fakeBooter boots "c00".."cNN"; kernels from firstBad on print a
// different version, and names in broken do not boot.
type fakeBooter struct {
	firstBad int
	broken   map[string]error
	mu       sync.Mutex
	vms      []*fakeVM
}

func (b *fakeBooter) Boot(ctx context.Context, c Candidate, runDir string) (VM, error) {
	if err := b.broken[c.Name]; err != nil {
		return nil, err
	}
	var idx int
	if _, err := fmt.Sscanf(c.Name, "c%d", &idx); err != nil {
		return nil, err
	}
	ver := "6.1.0-47-amd64\n"
	if idx >= b.firstBad {
		ver = "6.12.111+deb12-amd64\n"
	}
	vm := &fakeVM{mu: &b.mu, port: 2200 + idx, fakeConsole: &fakeConsole{screen: "login: ", commands: map[string]struct {
		out    string
		status int
	}{"uname -r": {ver, 0}}}}
	b.mu.Lock()
	b.vms = append(b.vms, vm)
	b.mu.Unlock()
	return vm, nil
}

func (b *fakeBooter) allClosedOnce(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.NotEmpty(t, b.vms)
	for i, vm := range b.vms {
		require.Equal(t, 1, vm.closed, "vm %d closed %d times", i, vm.closed)
	}
}

func TestVMProberScriptFindsFirstBad(t *testing.T) {
	dir := t.TempDir()
	script := "expect login:\nassert-output \"uname -r\" ^6\\.1\\.\n"
	booter := &fakeBooter{firstBad: 9, broken: map[string]error{"c05": errors.New("qemu: could not load kernel")}}
	vp := &VMProber{Boot: booter}
	require.NoError(t, vp.UsePredicate(&Predicate{Kind: PredicateScript, ScriptPath: "s", ScriptText: script}))
	cfg := quickConfig(t, dir, 16, 2, 0)
	res, err := Run(context.Background(), cfg, vp)
	require.NoError(t, err)
	require.Equal(t, StatusFound, res.Status)
	require.Equal(t, 9, res.FirstBad)
	booter.allClosedOnce(t)
	for _, p := range res.Probes {
		b, err := os.ReadFile(filepath.Join(dir, p.RunDir, "outcome.json"))
		require.NoError(t, err)
		var o struct {
			Verdict Verdict
			Reason  string
		}
		require.NoError(t, json.Unmarshal(b, &o))
		require.Equal(t, p.Verdict, o.Verdict)
		if p.Name == "c05" {
			require.Equal(t, Skip, o.Verdict)
			require.Equal(t, "boot failed: qemu: could not load kernel", o.Reason)
		}
		if p.Verdict == Bad {
			require.Contains(t, o.Reason, `output of "uname -r" does not match`)
		}
	}
}

func TestVMProberHostCommandSeesTheVM(t *testing.T) {
	booter := &fakeBooter{firstBad: 3}
	vp := &VMProber{Boot: booter}
	cmd := `echo "$BOOTLAB_CANDIDATE $BOOTLAB_CANDIDATE_INDEX $BOOTLAB_SSH_PORT $BOOTLAB_CONSOLE_SOCKET" > seen; test "$BOOTLAB_CANDIDATE_INDEX" -lt 3`
	require.NoError(t, vp.UsePredicate(&Predicate{Kind: PredicateCommand, Command: cmd}))
	dir := t.TempDir()
	res, err := Run(context.Background(), quickConfig(t, dir, 6, 1, 0), vp)
	require.NoError(t, err)
	require.Equal(t, 3, res.FirstBad)
	b, err := os.ReadFile(filepath.Join(dir, "probes", "003-c03-a0", "seen"))
	require.NoError(t, err)
	require.Equal(t, "c03 3 2203 /run/console.sock\n", string(b))
	booter.allClosedOnce(t)
}

func TestVMProberPredicateChecks(t *testing.T) {
	vp := &VMProber{Boot: &fakeBooter{}}
	require.ErrorContains(t, vp.UsePredicate(&Predicate{Kind: PredicateScenario, Scenario: "boot"}), "cannot run scenarios")
	require.ErrorContains(t, vp.UsePredicate(&Predicate{Kind: PredicateScript, ScriptText: "bogus"}), `unknown step "bogus"`)
	require.ErrorContains(t, vp.UsePredicate(&Predicate{Kind: PredicateCommand}), "empty command")
	require.ErrorContains(t, vp.UsePredicate(&Predicate{Kind: "vibes"}), "unknown predicate kind")
	_, err := vp.Probe(context.Background(), Candidate{Name: "c00", ISO: "x"}, 0, t.TempDir())
	require.ErrorIs(t, err, ErrAbort, "probing without a predicate is a wiring bug, not a skip")

	var gotName string
	vp.Scenario = func(ctx context.Context, name string, vm VM, runDir string) (Outcome, error) {
		gotName = name
		return Outcome{Verdict: Bad, Reason: "storage-status never appeared"}, nil
	}
	require.NoError(t, vp.UsePredicate(&Predicate{Kind: PredicateScenario, Scenario: "provision"}))
	out, err := vp.Probe(context.Background(), Candidate{Name: "c00", ISO: "x"}, 0, t.TempDir())
	require.NoError(t, err)
	require.Equal(t, "provision", gotName)
	require.Equal(t, Bad, out.Verdict)
	require.Greater(t, out.Duration, time.Duration(0))
}

func TestVMProberShutsDownWhenInterrupted(t *testing.T) {
	booter := &fakeBooter{firstBad: 1}
	vp := &VMProber{Boot: booter}
	require.NoError(t, vp.UsePredicate(&Predicate{Kind: PredicateScript, ScriptText: "expect never-shown 1h"}))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := vp.Probe(ctx, Candidate{Name: "c00", ISO: "x"}, 0, t.TempDir())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	booter.allClosedOnce(t)

	abortBooter := &fakeBooter{broken: map[string]error{"c00": fmt.Errorf("qemu-system-x86_64 not found: %w", ErrAbort)}}
	vp = &VMProber{Boot: abortBooter}
	require.NoError(t, vp.UsePredicate(&Predicate{Kind: PredicateCommand, Command: "true"}))
	_, err = vp.Probe(context.Background(), Candidate{Name: "c00", ISO: "x"}, 0, t.TempDir())
	require.ErrorIs(t, err, ErrAbort)
}

func TestVMProberNotesUncleanShutdown(t *testing.T) {
	booter := &fakeBooter{firstBad: 5}
	vp := &VMProber{Boot: booter}
	require.NoError(t, vp.UsePredicate(&Predicate{Kind: PredicateScript, ScriptText: "expect login:"}))
	vmBoot := BooterFunc(func(ctx context.Context, c Candidate, runDir string) (VM, error) {
		vm, err := booter.Boot(ctx, c, runDir)
		if err == nil {
			vm.(*fakeVM).closeErr = errors.New("QEMU needed SIGKILL")
		}
		return vm, err
	})
	vp.Boot = vmBoot
	out, err := vp.Probe(context.Background(), Candidate{Name: "c00", ISO: "x"}, 0, t.TempDir())
	require.NoError(t, err)
	require.Equal(t, Good, out.Verdict)
	require.True(t, strings.HasSuffix(out.Reason, "(shutdown: QEMU needed SIGKILL)"), out.Reason)
}

func TestProbeTimeoutIsASkip(t *testing.T) {
	p := ProberFunc(func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
		pi, ok := ProbeInfoFrom(ctx)
		if !ok {
			return Outcome{}, fmt.Errorf("no probe info: %w", ErrAbort)
		}
		switch {
		case c.Name == "c02":
			<-ctx.Done() // a hung boot
			return Outcome{}, ctx.Err()
		case pi.Index < 3:
			return Outcome{Verdict: Good}, nil
		}
		return Outcome{Verdict: Bad}, nil
	})
	cfg := quickConfig(t, t.TempDir(), 8, 1, 0)
	cfg.ProbeTimeout = 100 * time.Millisecond
	res, err := Run(context.Background(), cfg, p)
	require.NoError(t, err)
	require.Equal(t, StatusAmbiguous, res.Status)
	require.Equal(t, []int{2, 3}, res.Suspects)
	var reasons []string
	for _, pr := range res.Probes {
		if pr.Name == "c02" {
			reasons = append(reasons, pr.Reason)
		}
	}
	require.Equal(t, []string{"probe did not finish within --probe-timeout 100ms"}, reasons)
	loaded, err := LoadConfig(cfg.Dir)
	require.NoError(t, err)
	require.Equal(t, 100*time.Millisecond, loaded.ProbeTimeout, "a resume keeps the timeout")
}

// evidenceVM is a booted VM that names the harness's own run directory.
type evidenceVM struct {
	*fakeVM
	dir string
}

func (v evidenceVM) EvidenceDir() string { return v.dir }

// The harness's run directory comes back through Evidence, from a booted VM and from
// a boot failure alike, and outcome.json is still written in the probe directory.
func TestVMProberReportsEvidenceDir(t *testing.T) {
	booter := &fakeBooter{firstBad: 5}
	vp := &VMProber{}
	require.NoError(t, vp.UsePredicate(&Predicate{Kind: PredicateScript, ScriptText: "expect login:"}))
	vp.Boot = BooterFunc(func(ctx context.Context, c Candidate, runDir string) (VM, error) {
		if c.Name == "broken" {
			return nil, &BootError{Err: errors.New("no login prompt"), Dir: "probes/x/lab-run"}
		}
		vm, err := booter.Boot(ctx, c, runDir)
		if err != nil {
			return nil, err
		}
		return evidenceVM{vm.(*fakeVM), "probes/x/lab-ok"}, nil
	})
	dir := t.TempDir()
	out, err := vp.Probe(context.Background(), Candidate{Name: "c00", ISO: "x"}, 0, dir)
	require.NoError(t, err)
	require.Equal(t, Good, out.Verdict)
	require.Equal(t, "probes/x/lab-ok", out.RunDir)
	require.FileExists(t, filepath.Join(dir, "outcome.json"))
	out, err = vp.Probe(context.Background(), Candidate{Name: "broken", ISO: "x"}, 0, t.TempDir())
	require.NoError(t, err)
	require.Equal(t, Skip, out.Verdict)
	require.Contains(t, out.Reason, "no login prompt")
	require.Equal(t, "probes/x/lab-run", out.RunDir)
}
