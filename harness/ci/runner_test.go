package ci

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bootlab/bootlab/artifacts/runrec"
)

// The workflow runner (runner.go) inside make unit: the jobs that need no VM
// run here on the host as written, in a clean clone of HEAD; the download of
// the nightly shards finds one synthetic shard of run records in the
// artefact store. The other jobs run in `make ci-local` (and ci/lint,
// ci/unit, ci/nix in make test), but every make, go test, bootlab and .ci/
// command line in them is checked here against the real Makefile, flags and
// scenarios (cmdcheck_test.go). Which jobs run here is decided by their
// commands (expensive in cmdcheck_test.go): nothing that make test runs
// anyway, boots a VM or installs packages, so this adds seconds, not minutes.

// checkout is the runner's clean clone of HEAD, shared by the tests in one
// `go test` run; the facts are gathered from it once.
var checkout struct {
	once  sync.Once
	dir   string
	lock  *os.File
	facts *repoFacts
	err   error
}

func cleanClone(t *testing.T) (string, *repoFacts) {
	t.Helper()
	requireTool(t, "git", "apt-get install git")
	checkout.once.Do(func() {
		// A fixed place per repository rather than a fresh temp dir: Go's build cache
		// keys compiled packages by their directory too, so the clone's bootlab build
		// (and the report job's go run) hit the cache from the previous make test. A
		// lock keeps two runs from the same repository apart.
		root := repoRoot(t)
		base := filepath.Join(os.TempDir(), fmt.Sprintf("bootlab-ci-clone-%x", sha256.Sum256([]byte(root)))[:len("bootlab-ci-clone-")+12])
		if err := os.MkdirAll(base, 0o755); err != nil {
			checkout.err = err
			return
		}
		lock, err := os.OpenFile(base+".lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			checkout.err = err
			return
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			checkout.err = fmt.Errorf("locking %s.lock: %w", base, err)
			return
		}
		checkout.lock = lock
		checkout.dir = filepath.Join(base, "ws")
		if err := os.RemoveAll(checkout.dir); err != nil {
			checkout.err = fmt.Errorf("removing the previous clone: %w", err)
			return
		}
		clone := exec.Command("git", "clone", "-q", root, checkout.dir)
		if out, err := clone.CombinedOutput(); err != nil {
			checkout.err = fmt.Errorf("git clone of the repository: %w\n%s", err, out)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		checkout.facts, checkout.err = gatherFacts(ctx, checkout.dir, base)
	})
	if checkout.err != nil {
		t.Fatal(checkout.err)
	}
	return checkout.dir, checkout.facts
}

func TestMain(m *testing.M) {
	code := m.Run()
	if checkout.dir != "" {
		os.RemoveAll(checkout.dir)
		os.Remove(filepath.Join(filepath.Dir(checkout.dir), "bootlab"))
	}
	if checkout.lock != nil {
		checkout.lock.Close()
	}
	os.Exit(code)
}

// fakeShard writes what one nightly shard uploads: a notes directory with a
// finished run (a passing scenario), its ledger line, and the run's disk
// image (a shard never uploads one; it is here so the merged upload's
// exclusion is exercised).
func fakeShard(dir string) error {
	started := time.Date(2026, 12, 1, 2, 17, 0, 0, time.UTC)
	r, err := runrec.Create(dir, "standard", started)
	if err != nil {
		return err
	}
	if err := r.Milestone(runrec.MilestoneSpawn, started.Add(time.Second)); err != nil {
		return err
	}
	if err := r.Scenario(runrec.Scenario{Name: "TestCleanDisk", Outcome: runrec.Pass}); err != nil {
		return err
	}
	if err := r.Finish(runrec.Pass, "", started.Add(90*time.Second)); err != nil {
		return err
	}
	if err := runrec.AppendLedger(runrec.DefaultLedger(dir), r.LedgerEntry()); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.Dir, "disk0.img"), make([]byte, 4096), 0o644)
}
