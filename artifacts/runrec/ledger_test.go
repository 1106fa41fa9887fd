package runrec

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Each line carries an error text larger than PIPE_BUF (4096) so that without the lock
// and the single write, concurrent appends could interleave.
func ledgerWriter(path, writer string, n int) error {
	pad := strings.Repeat(writer[:1], 9000)
	for i := 0; i < n; i++ {
		e := LedgerEntry{
			Time: t0.Add(time.Duration(i) * time.Second), Slug: writer, Dir: strconv.Itoa(i),
			Outcome: Pass, Error: pad,
			Milestones: map[string]Seconds{MilestoneLoginPrompt: Seconds(time.Duration(i) * time.Second)},
		}
		if err := AppendLedger(path, e); err != nil {
			return err
		}
	}
	return nil
}

func TestLedgerConcurrentWritersGoroutinesAndProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes", LedgerFile)
	const writers, perWriter = 8, 40
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for w := 0; w < writers; w++ {
		name := fmt.Sprintf("g%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ledgerWriter(path, name, perWriter); err != nil {
				errs <- err
			}
		}()
		pname := fmt.Sprintf("p%d", w)
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "RUNREC_HELPER=ledger", "RUNREC_LEDGER="+path,
			"RUNREC_WRITER="+pname, "RUNREC_N="+strconv.Itoa(perWriter))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("writer process %s: %v: %s", pname, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines) != 2*writers*perWriter {
		t.Fatalf("%d lines, want %d", len(lines), 2*writers*perWriter)
	}
	entries, skipped, err := ReadLedger(path)
	if err != nil || skipped != 0 {
		t.Fatalf("ledger has %d unparsable lines (err %v): lines interleaved", skipped, err)
	}
	// Every writer's lines are all there, each once, in that writer's order.
	next := map[string]int{}
	for _, e := range entries {
		i, _ := strconv.Atoi(e.Dir)
		if i != next[e.Slug] {
			t.Fatalf("writer %s: line %d after %d", e.Slug, i, next[e.Slug]-1)
		}
		if len(e.Error) != 9000 || e.Error[0] != e.Slug[0] || e.Milestones[MilestoneLoginPrompt].D() != time.Duration(i)*time.Second {
			t.Fatalf("entry corrupted: slug %s len %d", e.Slug, len(e.Error))
		}
		next[e.Slug]++
	}
	if len(next) != 2*writers {
		t.Fatalf("%d writers seen, want %d", len(next), 2*writers)
	}
}

func TestReadLedgerToleratesBadLinesAndMissingFile(t *testing.T) {
	dir := t.TempDir()
	if e, s, err := ReadLedger(filepath.Join(dir, "none.jsonl")); err != nil || len(e) != 0 || s != 0 {
		t.Fatalf("missing ledger: %v %v %v", e, s, err)
	}
	p := filepath.Join(dir, "l.jsonl")
	body := `{"time":"2026-11-23T01:02:03Z","slug":"a","outcome":"pass","milestones":{"spawn":0.1},"future_key":{"x":1}}
not json
{"slug":"b","outcome":"fail"
{"slug":"c","outcome":"error"}
`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	e, s, err := ReadLedger(p)
	if err != nil || s != 2 || len(e) != 2 || e[0].Slug != "a" || e[1].Outcome != Error || e[0].Milestones["spawn"].D() != 100*time.Millisecond {
		t.Fatalf("got %+v skipped %d err %v", e, s, err)
	}
}

func TestRunLedgerEntry(t *testing.T) {
	root := t.TempDir()
	r, err := Create(root, "entry", t0)
	if err != nil {
		t.Fatal(err)
	}
	_ = r.SetImage(Image{Path: "/x.iso", Kind: "iso", SHA256: "ab"})
	_ = r.Milestone(MilestoneRootShell, t0.Add(7*time.Second))
	_ = r.Scenario(Scenario{Name: "net", Outcome: Fail})
	if err := r.Finish(Fail, "net failed", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := AppendLedger(DefaultLedger(root), r.LedgerEntry()); err != nil {
		t.Fatal(err)
	}
	e, _, err := ReadLedger(filepath.Join(root, "ledger.jsonl"))
	if err != nil || len(e) != 1 {
		t.Fatal(err, e)
	}
	got := e[0]
	if got.Dir != r.Dir || got.Outcome != Fail || got.Duration.D() != time.Minute || got.Milestones[MilestoneRootShell].D() != 7*time.Second ||
		got.Scenarios["net"] != Fail || got.ImageSHA256 != "ab" || got.Error != "net failed" {
		t.Fatalf("ledger entry %+v", got)
	}
}

func marshalEntry(t *testing.T, e LedgerEntry) string {
	t.Helper()
	b, err := json.Marshal(e)
	require.NoError(t, err)
	return string(b)
}

// Issue 19 item 10: a line cut short (disk full) has no newline, so the next complete
// entry lands on the same line; it used to be skipped with the torn one. Every cut
// point of the torn entry is tried.
func TestReadLedgerRecoversAfterTornLine(t *testing.T) {
	first := marshalEntry(t, LedgerEntry{Time: t0, Slug: "first", Outcome: Pass})
	torn := marshalEntry(t, LedgerEntry{Time: t0, Slug: "torn", Outcome: Fail, Error: `he said {"x"}`,
		Milestones: map[string]Seconds{"spawn": 1, "login-prompt": 2}, Scenarios: map[string]Outcome{"net": Pass}})
	next := marshalEntry(t, LedgerEntry{Time: t0.Add(time.Minute), Slug: "next", Outcome: Fail,
		Milestones: map[string]Seconds{"spawn": Seconds(3 * time.Second)}})
	last := marshalEntry(t, LedgerEntry{Time: t0.Add(2 * time.Minute), Slug: "last", Outcome: Pass})
	p := filepath.Join(t.TempDir(), LedgerFile)
	for cut := 1; cut < len(torn); cut++ {
		body := first + "\n" + torn[:cut] + next + "\n" + last + "\n"
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		e, skipped, err := ReadLedger(p)
		require.NoError(t, err)
		var slugs []string
		for _, x := range e {
			slugs = append(slugs, x.Slug)
		}
		require.Equal(t, []string{"first", "next", "last"}, slugs, "cut at %d: %q", cut, torn[:cut])
		require.Equal(t, 1, skipped, "cut at %d", cut)
		require.Equal(t, 3*time.Second, e[1].Milestones["spawn"].D())
	}
}

// The writer side: an append after a torn line starts a line of its own.
func TestAppendLedgerAfterTornLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), LedgerFile)
	require.NoError(t, os.WriteFile(p, []byte(`{"time":"2026-11-23T01:02:03Z","slug":"to`), 0o644))
	e := LedgerEntry{Time: t0, Slug: "after", Outcome: Pass}
	require.NoError(t, AppendLedger(p, e))
	raw, err := os.ReadFile(p)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, marshalEntry(t, e), lines[1])
}
