package ci

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bootlab/bootlab/artifacts/runrec"
)

// The workflow runner: the jobs that need no VM run here exactly as written,
// in a clean clone of HEAD, with stand-ins for the actions (checkout is the
// clone, setup-go the Go on PATH, caches always miss, uploads check what they
// would upload, downloads deliver one synthetic shard of run records). The
// other jobs are not run, but every make, go test, bootlab and .ci/ command
// line in them is checked against the real Makefile, flags and scenarios
// (cmdcheck_test.go). Which jobs run is decided by their commands (expensive
// in cmdcheck_test.go): nothing that make test runs anyway, boots a VM or
// installs packages, so the runner adds seconds, not minutes.

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

// goEnv holds the real Go caches, so the runner's HOME can be a temporary
// directory without recompiling the world or downloading modules again.
func goEnv(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOPATH", "GOCACHE", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	v := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(v) != 3 {
		t.Fatalf("go env printed %q", out)
	}
	return []string{"GOPATH=" + v[0], "GOCACHE=" + v[1], "GOMODCACHE=" + v[2],
		"PATH=" + os.Getenv("PATH") + string(os.PathListSeparator) + filepath.Join(v[0], "bin")}
}

// jobRun is one job on the stand-in runner.
type jobRun struct {
	t      *testing.T
	wf     *workflow
	name   string
	ws     string
	temp   string
	ec     *exprCtx
	env    map[string]string // what steps see beyond the base environment
	base   []string
	output bytes.Buffer
}

func runJob(t *testing.T, wf *workflow, name, ws string) error {
	t.Helper()
	j := wf.Jobs[name]
	temp := t.TempDir()
	home := filepath.Join(temp, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &jobRun{t: t, wf: wf, name: name, ws: ws, temp: temp, ec: newExprCtx(wf, j, temp, ws), env: map[string]string{}}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// A clean runner: none of make test's own settings leak in.
		if strings.HasPrefix(k, "BOOTLAB_") || strings.HasPrefix(k, "GITHUB_") || strings.HasPrefix(k, "RUNNER_") ||
			strings.HasPrefix(k, "XDG_") || k == "HOME" || k == "PATH" || strings.HasPrefix(k, "GO") {
			continue
		}
		r.base = append(r.base, kv)
	}
	r.base = append(r.base, goEnv(t)...)
	r.base = append(r.base, "HOME="+home, "CI=true", "GITHUB_ACTIONS=true", "RUNNER_OS=Linux",
		"RUNNER_TEMP="+temp, "GITHUB_WORKSPACE="+ws, "GITHUB_RUN_ID=1", "GOTOOLCHAIN=local",
		"GITHUB_STEP_SUMMARY="+filepath.Join(temp, "step-summary.md"))
	for _, layer := range []map[string]string{wf.Env, j.Env} {
		for k, v := range layer {
			x, err := r.ec.expand(v)
			if err != nil {
				return err
			}
			r.env[k], r.ec.env[k] = x, x
		}
	}

	var errs []error
	failed := false
	for i, s := range j.Steps {
		run, err := r.ec.cond(s.If, failed)
		if err != nil {
			return err
		}
		if !run {
			t.Logf("%s: skipped (if: %s)", s.label(i), s.If)
			continue
		}
		began := time.Now()
		if s.Uses != "" {
			err = r.standIn(s)
		} else {
			err = r.script(i, s)
		}
		t.Logf("%s: %v in %s", s.label(i), ifErr(err, "ok"), time.Since(began).Round(time.Millisecond))
		if err != nil {
			failed = true
			errs = append(errs, fmt.Errorf("%s job %s %s: %w", wf.file, name, s.label(i), err))
		}
	}
	if out := r.output.String(); len(errs) > 0 && out != "" {
		errs = append(errs, fmt.Errorf("output of the job:\n%s", tail(out, 4000)))
	}
	return errors.Join(errs...)
}

func ifErr(err error, ok string) any {
	if err != nil {
		return err
	}
	return ok
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// script runs a run: step as GitHub does: bash -e (or the shell the step
// names), in the workspace, with GITHUB_ENV and GITHUB_OUTPUT files read
// back afterwards.
func (r *jobRun) script(i int, s step) error {
	body, err := r.ec.expand(s.Run)
	if err != nil {
		return err
	}
	file := filepath.Join(r.temp, fmt.Sprintf("step-%d.sh", i+1))
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		return err
	}
	envFile := filepath.Join(r.temp, fmt.Sprintf("env-%d", i+1))
	outFile := filepath.Join(r.temp, fmt.Sprintf("output-%d", i+1))
	for _, f := range []string{envFile, outFile} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return err
		}
	}
	shell := s.Shell
	if shell == "" {
		shell = r.wf.Defaults.Run.Shell
	}
	var argv []string
	switch shell {
	case "":
		argv = []string{"bash", "-e", file}
	case "bash":
		argv = []string{"bash", "--noprofile", "--norc", "-eo", "pipefail", file}
	case "sh":
		argv = []string{"sh", "-e", file}
	default:
		return fmt.Errorf("the workflow runner has no shell %q", shell)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = filepath.Join(r.ws, s.Dir)
	cmd.Env = append([]string{}, r.base...)
	cmd.Env = append(cmd.Env, "GITHUB_ENV="+envFile, "GITHUB_OUTPUT="+outFile)
	for k, v := range r.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range s.Env {
		x, err := r.ec.expand(v)
		if err != nil {
			return err
		}
		cmd.Env = append(cmd.Env, k+"="+x)
	}
	cmd.Stdout, cmd.Stderr = &r.output, &r.output
	runErr := cmd.Run()
	vars, err := readEnvFile(envFile)
	if err != nil {
		return err
	}
	for k, v := range vars {
		r.env[k], r.ec.env[k] = v, v
	}
	if s.ID != "" {
		outs, err := readEnvFile(outFile)
		if err != nil {
			return err
		}
		r.ec.steps[s.ID] = outs
	}
	return runErr
}

// readEnvFile reads GITHUB_ENV/GITHUB_OUTPUT syntax: NAME=value lines and
// NAME<<DELIM heredocs.
func readEnvFile(p string) (map[string]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if k, delim, ok := strings.Cut(l, "<<"); ok && !strings.Contains(k, "=") {
			var val []string
			for sc.Scan() && sc.Text() != delim {
				val = append(val, sc.Text())
			}
			out[k] = strings.Join(val, "\n")
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			out[k] = v
		}
	}
	return out, sc.Err()
}

// standIn does what an action would do, as far as the job's outcome depends
// on it here.
func (r *jobRun) standIn(s step) error {
	with := map[string]string{}
	for k, v := range s.With {
		x, err := r.ec.expand(v)
		if err != nil {
			return err
		}
		with[k] = x
	}
	action, _, _ := strings.Cut(s.Uses, "@")
	switch action {
	case "actions/checkout":
		// The clean clone is the checkout.
	case "actions/setup-go":
		if f := with["go-version-file"]; f != "" {
			if _, err := os.Stat(filepath.Join(r.ws, f)); err != nil {
				return fmt.Errorf("setup-go: go-version-file: %w", err)
			}
		}
	case "actions/cache", "actions/cache/restore", "actions/cache/save":
		if with["path"] == "" || with["key"] == "" {
			return fmt.Errorf("%s without path or key", action)
		}
		if s.ID != "" {
			r.ec.steps[s.ID] = map[string]string{"cache-hit": "false"}
		}
	case "actions/upload-artifact":
		files, err := uploadSet(with["path"])
		if err != nil {
			return err
		}
		if len(files) == 0 && with["if-no-files-found"] == "error" {
			return fmt.Errorf("upload %q: no files under %q", with["name"], with["path"])
		}
		for _, f := range files {
			if isDiskImage(f) {
				return fmt.Errorf("upload %q would include the disk image %s", with["name"], f)
			}
		}
		r.t.Logf("upload %q: %d file(s)", with["name"], len(files))
	case "actions/download-artifact":
		if with["path"] == "" {
			return errors.New("download-artifact without path")
		}
		name := with["name"]
		if name == "" {
			name = strings.ReplaceAll(with["pattern"], "*", "1")
		}
		return fakeShard(filepath.Join(with["path"], name))
	default:
		return fmt.Errorf("the workflow runner has no stand-in for %s", s.Uses)
	}
	return nil
}

func isDiskImage(p string) bool {
	switch path.Ext(p) {
	case ".img", ".qcow2", ".raw", ".iso":
		return true
	}
	return false
}

// uploadSet returns the files upload-artifact would take for a path input:
// one pattern per line; `!` lines exclude; `**` spans directories.
func uploadSet(spec string) ([]string, error) {
	var incl, excl []string
	for _, l := range strings.Split(spec, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case strings.HasPrefix(l, "!"):
			excl = append(excl, l[1:])
		default:
			incl = append(incl, l)
		}
	}
	var files []string
	for _, p := range incl {
		err := filepath.WalkDir(globRoot(p), func(f string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil || d.IsDir() {
				return err
			}
			if !matchUpload(p, f) {
				return nil
			}
			for _, x := range excl {
				if matchUpload(x, f) {
					return nil
				}
			}
			files = append(files, f)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", p, err)
		}
	}
	return files, nil
}

// globRoot is the directory part of a pattern before its first wildcard.
func globRoot(p string) string {
	i := strings.IndexAny(p, "*?[")
	if i < 0 {
		return p
	}
	return filepath.Dir(p[:i] + "x")
}

// matchUpload reports whether file f is taken by pattern p: a directory
// takes everything under it, DIR/**/GLOB any file under DIR whose name
// matches GLOB, anything else is a plain glob.
func matchUpload(p, f string) bool {
	if !strings.ContainsAny(p, "*?[") {
		return f == p || strings.HasPrefix(f, strings.TrimSuffix(p, "/")+"/")
	}
	if dir, glob, ok := strings.Cut(p, "/**/"); ok {
		ok, _ := path.Match(glob, path.Base(f))
		return ok && strings.HasPrefix(f, dir+"/")
	}
	if dir, ok := strings.CutSuffix(p, "/**"); ok {
		return strings.HasPrefix(f, dir+"/")
	}
	ok, _ := path.Match(p, f)
	return ok
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
