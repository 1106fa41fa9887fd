package ci

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The runner's own behaviour on synthetic workflows, on this machine. Its
// container side is proven by make test itself (ci/unit runs in debian:12).

func TestExpandJobsExpandsTheMatrixAfterNeeds(t *testing.T) {
	wf, err := parseWorkflow("w.yml", []byte(`
name: w
on: {push: {}}
jobs:
  report:
    needs: shards
    runs-on: ubuntu-latest
    steps: [{run: "true"}]
  shards:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        shard: [1, 2, 3]
        os: [a, b]
    steps: [{run: "true"}]
`))
	require.NoError(t, err)
	jobs, err := ExpandJobs([]*workflow{wf})
	require.NoError(t, err)
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name())
		if j.ID == "shards" {
			require.Equal(t, 6, j.Total)
		}
	}
	require.Equal(t, []string{"w/shards os=a shard=1", "w/shards os=a shard=2", "w/shards os=a shard=3",
		"w/shards os=b shard=1", "w/shards os=b shard=2", "w/shards os=b shard=3", "w/report"}, names)
	require.True(t, jobs[1].Matches("w/shards:shard=2"))
	require.True(t, jobs[1].Matches("w/shards:shard=2,os=a"))
	require.False(t, jobs[1].Matches("w/shards:shard=3"))
	require.True(t, jobs[1].Matches("w/shards"))
	require.False(t, jobs[1].Matches("w/report"))

	_, err = matrixCombos(map[string]any{"include": []any{1}})
	require.ErrorContains(t, err, "does not expand matrix include")
}

// hostRunner runs a synthetic workflow's jobs on this machine in a
// throwaway repository.
func hostRunner(t *testing.T, wfYAML string) (*Runner, []Job, *bytes.Buffer) {
	t.Helper()
	repo := t.TempDir()
	for _, c := range [][]string{{"init", "-q"}, {"config", "user.email", "t@example.invalid"}, {"config", "user.name", "t"}} {
		require.NoError(t, exec.Command("git", append([]string{"-C", repo}, c...)...).Run())
	}
	require.NoError(t, os.MkdirAll(filepath.Join(repo, ".github", "workflows"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(repo, ".github", "workflows", "w.yml"), []byte(wfYAML), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module x\n\ngo 1.21\n"), 0o644))
	require.NoError(t, exec.Command("git", "-C", repo, "add", "-A").Run())
	require.NoError(t, exec.Command("git", "-C", repo, "commit", "-qm", "x").Run())
	jobs := loadJobs(t, repo)
	var log bytes.Buffer
	return &Runner{Repo: repo, State: t.TempDir(), Artifacts: t.TempDir(), Out: &log}, jobs, &log
}

func TestRunnerHonoursEnvPathOutputsAndConditions(t *testing.T) {
	r, jobs, log := hostRunner(t, `
name: w
on: {push: {}}
env:
  WF: wf
jobs:
  j:
    runs-on: ubuntu-latest
    env:
      JOB: job-${{ env.WF }}
    steps:
      - uses: actions/checkout@v4
      - name: set
        id: set
        run: |
          echo "FROM_STEP=one" >> "$GITHUB_ENV"
          mkdir -p "$RUNNER_TEMP/bin" && printf '#!/bin/sh\necho tool-ran\n' > "$RUNNER_TEMP/bin/mytool" && chmod +x "$RUNNER_TEMP/bin/mytool"
          echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
          echo "answer=42" >> "$GITHUB_OUTPUT"
          echo "## hello summary" >> "$GITHUB_STEP_SUMMARY"
      - name: use
        env:
          STEP: s-${{ steps.set.outputs.answer }}
        run: |
          mytool > "$RUNNER_TEMP/seen"
          echo "$WF $JOB $FROM_STEP $STEP ${{ env.FROM_STEP }} $CI $GITHUB_ACTIONS" >> "$RUNNER_TEMP/seen"
          test -f go.mod
      - name: only when the output says so
        if: steps.set.outputs.answer != '42'
        run: echo never > "$RUNNER_TEMP/never"
      - name: fail
        run: exit 3
      - name: skipped after a failure
        run: echo after > "$RUNNER_TEMP/after"
      - name: always
        if: always()
        run: echo always > "$RUNNER_TEMP/always"
`)
	require.Len(t, jobs, 1)
	res := r.Run(context.Background(), jobs[0])
	require.Error(t, res.Err, log.String())
	require.Contains(t, res.Err.Error(), `step 5 "fail"`)
	temp := filepath.Join(r.State, "work", jobs[0].slug(), "_temp")
	seen, err := os.ReadFile(filepath.Join(temp, "seen"))
	require.NoError(t, err, log.String())
	require.Equal(t, "tool-ran\nwf job-wf one s-42 one true true\n", string(seen))
	require.NoFileExists(t, filepath.Join(temp, "never"))
	require.NoFileExists(t, filepath.Join(temp, "after"))
	require.FileExists(t, filepath.Join(temp, "always"))
	require.Contains(t, log.String(), "## hello summary")
	require.Contains(t, log.String(), "skipped (if: steps.set.outputs.answer != '42')")
}

func TestCheckoutCopiesTheWorkingTree(t *testing.T) {
	r, jobs, log := hostRunner(t, `
name: w
on: {push: {}}
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: |
          test "$(cat new.txt)" = new
          grep -q 'go 1.22' go.mod
          test -z "$(git status --porcelain)"
`)
	require.NoError(t, os.WriteFile(filepath.Join(r.Repo, "new.txt"), []byte("new"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(r.Repo, "go.mod"), []byte("module x\n\ngo 1.22\n"), 0o644))
	res := r.Run(context.Background(), jobs[0])
	require.NoError(t, res.Err, log.String())

	r.HeadOnly = true
	res = r.Run(context.Background(), jobs[0])
	require.Error(t, res.Err, "with -head the uncommitted file must not be there")
}

func TestUploadAndDownloadCheckWhatTheyCarry(t *testing.T) {
	job := func(files string) string {
		return `
name: w
on: {push: {}}
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: |
          mkdir -p "$RUNNER_TEMP/notes/run1"
          for f in ` + files + `; do echo x > "$RUNNER_TEMP/notes/run1/$f"; done
          echo "NOTES=$RUNNER_TEMP/notes" >> "$GITHUB_ENV"
      - uses: actions/upload-artifact@v4
        with:
          name: notes-1
          path: |
            ${{ env.NOTES }}
            !${{ env.NOTES }}/**/*.qcow2
          if-no-files-found: error
      - uses: actions/download-artifact@v4
        with:
          pattern: notes-*
          path: ${{ runner.temp }}/got
      - run: test "$(cat "$RUNNER_TEMP/got/notes-1/run1/serial.log")" = x
`
	}
	r, jobs, log := hostRunner(t, job("serial.log overlay.qcow2"))
	res := r.Run(context.Background(), jobs[0])
	require.NoError(t, res.Err, log.String())
	require.FileExists(t, filepath.Join(r.Artifacts, "notes-1", "run1", "serial.log"))
	require.NoFileExists(t, filepath.Join(r.Artifacts, "notes-1", "run1", "overlay.qcow2"))

	r, jobs, log = hostRunner(t, job("serial.log disk0.img"))
	res = r.Run(context.Background(), jobs[0])
	require.ErrorContains(t, res.Err, "would include the disk image", log.String())
	require.NoDirExists(t, filepath.Join(r.Artifacts, "notes-1"))

	r, jobs, log = hostRunner(t, job(""))
	res = r.Run(context.Background(), jobs[0])
	require.ErrorContains(t, res.Err, `upload "notes-1": no files`, log.String())
	require.NotContains(t, res.Err.Error(), "download-artifact", "the step after a failed upload ran")
}

func TestCacheRestoresWhatWasSaved(t *testing.T) {
	r, jobs, log := hostRunner(t, `
name: w
on: {push: {}}
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: c
        uses: actions/cache/restore@v4
        with:
          path: ~/stuff
          key: stuff-${{ hashFiles('go.mod') }}
          restore-keys: |
            stuff-
      - run: |
          echo "hit=${{ steps.c.outputs.cache-hit }}" >> "$RUNNER_TEMP/hits"
          if [ -f ~/stuff/a ]; then cat ~/stuff/a >> "$RUNNER_TEMP/hits"; fi
          mkdir -p ~/stuff && echo "$(date +%s%N)" > ~/stuff/a
      - if: always() && steps.c.outputs.cache-hit != 'true'
        uses: actions/cache/save@v4
        with:
          path: ~/stuff
          key: stuff-${{ hashFiles('go.mod') }}
`)
	ctx := context.Background()
	temp := filepath.Join(r.State, "work", jobs[0].slug(), "_temp")
	res := r.Run(ctx, jobs[0])
	require.NoError(t, res.Err, log.String())
	first, err := os.ReadFile(filepath.Join(temp, "hits"))
	require.NoError(t, err)
	require.Equal(t, "hit=false\n", string(first))
	entries, err := os.ReadDir(r.cacheStore())
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Regexp(t, `^stuff-[0-9a-f]{64}$`, entries[0].Name(), "hashFiles hashes the checkout's go.mod")

	res = r.Run(ctx, jobs[0])
	require.NoError(t, res.Err, log.String())
	second, err := os.ReadFile(filepath.Join(temp, "hits"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(second), "hit=true\n"), "%s", second)
	require.Greater(t, len(second), len("hit=true\n"), "the restored file is there")

	// A changed go.mod: a new key, restored from the prefix, not an exact hit.
	require.NoError(t, os.WriteFile(filepath.Join(r.Repo, "go.mod"), []byte("module x\n\ngo 1.23\n"), 0o644))
	time.Sleep(10 * time.Millisecond)
	res = r.Run(ctx, jobs[0])
	require.NoError(t, res.Err, log.String())
	third, err := os.ReadFile(filepath.Join(temp, "hits"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(third), "hit=false\n1"), "%s", third)
}

func TestAStandInThatCannotDoItsJobFails(t *testing.T) {
	r, jobs, log := hostRunner(t, `
name: w
on: {push: {}}
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          path: elsewhere
      - if: always()
        uses: some/action@v1
`)
	res := r.Run(context.Background(), jobs[0])
	require.ErrorContains(t, res.Err, `does not implement the input "path"`, log.String())
	require.ErrorContains(t, res.Err, "no stand-in for some/action@v1")

	r, jobs, _ = hostRunner(t, `
name: w
on: {push: {}}
jobs:
  j:
    runs-on: ubuntu-latest
    container: debian:12
    steps: [{run: "true"}]
`)
	res = r.Run(context.Background(), jobs[0])
	require.ErrorContains(t, res.Err, "has no container engine")
}

// TestSnapshotKeyFollowsTheInstallSteps: a changed install step or
// .ci/deps.sh makes a new key (the job reruns them from bare debian:12); a
// changed later step does not.
func TestSnapshotKeyFollowsTheInstallSteps(t *testing.T) {
	parse := func(install, later string) *job {
		wf, err := parseWorkflow("w.yml", []byte(`
name: w
on: {push: {}}
jobs:
  j:
    runs-on: ubuntu-latest
    container: debian:12
    steps:
      - run: apt-get install -y `+install+`
      - uses: actions/checkout@v4
      - run: make deps
      - run: `+later+`
`))
		require.NoError(t, err)
		return wf.Jobs["j"]
	}
	key := func(j *job, deps string) string {
		k, err := snapshotKey("sha256:base", "--privileged", j, []byte(deps))
		require.NoError(t, err)
		require.Len(t, k, 16)
		return k
	}
	k := key(parse("git make", "make unit"), "deps v1")
	require.Equal(t, k, key(parse("git make", "make vm"), "deps v1"), "a step after the install steps changed the key")
	require.NotEqual(t, k, key(parse("git make curl", "make unit"), "deps v1"), "a changed install step kept the key")
	require.NotEqual(t, k, key(parse("git make", "make unit"), "deps v2"), "a changed .ci/deps.sh kept the key")
	require.Equal(t, 2, lastInstallStep(parse("git", "make unit")))
}

// TestVMLockWaitsAndGivesUp: the VM lock is granted when its holder lets go,
// and a job that stops waiting gets an error instead of the lock.
func TestVMLockWaitsAndGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.lock")
	unlock, err := flockFile(context.Background(), path)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = flockFile(ctx, path)
	require.ErrorContains(t, err, "waiting for the lock")

	got := make(chan error, 1)
	go func() {
		u, err := flockFile(context.Background(), path)
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("granted while held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("not granted after the holder let go")
	}
}

// loadJobs is every job of the workflows under dir/.github/workflows, matrices expanded.
func loadJobs(t *testing.T, dir string) []Job {
	t.Helper()
	wfs, err := LoadWorkflows(dir)
	require.NoError(t, err)
	jobs, err := ExpandJobs(wfs)
	require.NoError(t, err)
	return jobs
}
