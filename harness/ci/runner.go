package ci

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// The workflow runner: GitHub's jobs, run on this machine as written.
//
// A job with `container:` runs in a real container of that image (podman,
// Engine); a job without runs on this machine. Its run: steps run in order
// with bash -e, the job's and step's env:, `if:`, GITHUB_ENV, GITHUB_OUTPUT,
// GITHUB_PATH and GITHUB_STEP_SUMMARY. Each uses: step is done by a local
// stand-in (standIn): checkout copies the tree, setup-go puts the go.mod
// toolchain on PATH, caches and artefacts live in local directories whose
// contents are checked. A stand-in that cannot do what the action would
// fails and says why; nothing is skipped silently.

// Runner runs jobs. The zero value is not usable; fill the fields.
type Runner struct {
	Repo      string            // the repository: its working tree is what checkout copies
	HeadOnly  bool              // checkout clones HEAD instead of copying the working tree
	State     string            // persistent: work directories, caches, Go caches, snapshots
	Artifacts string            // this run's uploaded artefacts (download-artifact reads here)
	Inputs    map[string]string // workflow_dispatch inputs; the rest take their defaults
	Out       io.Writer         // the log: each job, step and its output
	Engine    *Engine           // runs container jobs; nil: see OnThisMachine
	// OnThisMachine runs container jobs here instead, because this machine is
	// already a fresh container of their image (the runner inside a container).
	OnThisMachine bool
	// HostEnv is the environment host jobs start from (default os.Environ()).
	HostEnv []string
	// VMLock is the file held while a job that boots VMs runs ("" = none).
	VMLock string
	// Cache is the Actions cache stand-in's store (default State/cache). A run of
	// its own (make ci-nights) keeps its ledger history apart from the usual runs'.
	Cache string
	// RunID is github.run_id and GITHUB_RUN_ID; empty: a new one, the time in
	// nanoseconds, taken at the first job. GitHub gives every run its own; a cache
	// key made of it (the nightly ledger's) names one run, so two runs sharing one
	// State need two ids, or the second's save is refused as an existing key and
	// the next run restores the first's.
	RunID string

	toolchains map[string]string // go version -> GOROOT on this machine
	failed     map[string]bool   // workflow/job id -> a combination failed
}

// Result is how one job ended.
type Result struct {
	Job     Job
	Where   string // "host", "container debian:12 (snapshot ...)"
	Err     error
	Skipped string // why the job did not run
	Took    time.Duration
}

// stepShell runs a command where the job's steps run.
type stepShell interface {
	run(ctx context.Context, dir string, env []string, argv []string, out io.Writer) error
	close()
}

// jobRun is one job on the runner.
type jobRun struct {
	r        *Runner
	job      Job
	def      *job
	ws, temp string
	home     string
	ec       *exprCtx
	env      map[string]string // workflow, job and GITHUB_ENV variables
	paths    []string          // GITHUB_PATH additions, newest first
	base     []string          // the environment every step starts from
	basePath string
	sh       stepShell
	inCtr    bool // steps run in a container (mount paths equal host paths)
	// recorded while the install steps run, for a snapshot to replay
	installEnv   map[string]string
	installPaths []string
}

// Run runs one job and reports how it ended. Jobs run in the order given;
// a job whose needs failed is skipped unless its if: says always().
func (r *Runner) Run(ctx context.Context, j Job) (res Result) {
	if r.failed == nil {
		r.failed = map[string]bool{}
	}
	res = Result{Job: j}
	began := time.Now()
	def := j.definition()
	defer func() {
		res.Took = time.Since(began)
		if res.Err != nil {
			r.failed[j.Workflow()+"/"+j.ID] = true
		}
	}()
	needsFailed := false
	for _, n := range def.needs() {
		needsFailed = needsFailed || r.failed[j.Workflow()+"/"+n]
	}
	if cond := strings.TrimSpace(def.If); cond != "" && cond != "always()" && cond != "${{ always() }}" {
		res.Err = fmt.Errorf("%s: the workflow runner does not understand the job condition %q", j.Name(), def.If)
		return res
	}
	if needsFailed && !strings.Contains(def.If, "always()") {
		res.Skipped = "a job it needs failed"
		fmt.Fprintf(r.Out, "== %s: skipped: a job it needs failed\n", j.Name())
		return res
	}
	timeout := 6 * time.Hour // GitHub's limit
	if def.TimeoutMinutes > 0 {
		timeout = time.Duration(def.TimeoutMinutes) * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res.Where, res.Err = r.run(ctx, j)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.Err = fmt.Errorf("%s: timeout-minutes %d exceeded: %w", j.Name(), def.TimeoutMinutes, res.Err)
	}
	return res
}

// repoName is the checkout directory's name, as GitHub names it after the repository.
const repoName = "bootlab"

func (r *Runner) run(ctx context.Context, j Job) (string, error) {
	def := j.definition()
	base := filepath.Join(r.State, "work", j.slug())
	jr := &jobRun{r: r, job: j, def: def, ws: filepath.Join(base, repoName), temp: filepath.Join(base, "_temp"),
		env: map[string]string{}, installEnv: map[string]string{}}
	// A fixed place per job, as GitHub's /__w/<repo>/<repo>: Go's build cache keys
	// packages by directory, so a second run hits what the first compiled.
	if err := os.RemoveAll(base); err != nil {
		return "", fmt.Errorf("clearing the work directory of %s: %w", j.Name(), err)
	}
	jr.home = filepath.Join(jr.temp, "home")
	for _, d := range []string{jr.ws, jr.temp, jr.home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("creating the work directory of %s: %w", j.Name(), err)
		}
	}
	jr.ec = newExprCtx(j.wf, def, jr.temp, jr.ws)
	jr.ec.github["run_id"] = r.runID()
	jr.ec.matrix, jr.ec.jobTotal, jr.ec.inputs, jr.ec.hashRoot = j.Matrix, j.Total, r.Inputs, jr.ws
	jr.ec.github["job"] = j.ID

	image, options := containerOf(def)
	var where string
	skipInstall := false
	var snap snapshot
	switch {
	case image == "":
		where = "host"
		jr.sh = hostShell{}
		jr.base, jr.basePath = r.hostBase(jr)
	case r.OnThisMachine:
		if err := thisMachineIs(image); err != nil {
			return "", fmt.Errorf("%s wants container %s: %w", j.Name(), image, err)
		}
		where = "this machine, already a fresh " + image + " container"
		jr.sh = hostShell{}
		jr.base, jr.basePath = r.hostBase(jr)
		jr.home = os.Getenv("HOME")
		jr.base = setEnv(jr.base, "HOME", jr.home)
	case r.Engine == nil:
		return "", fmt.Errorf("%s runs in container %s and this runner has no container engine", j.Name(), image)
	default:
		jr.inCtr = true
		var err error
		snap, err = r.snapshotFor(jr, image, options)
		if err != nil {
			return "", err
		}
		from := snap.base
		if snap.hit {
			from = snap.image
			skipInstall = true
		}
		mounts, err := r.mounts(jr)
		if err != nil {
			return "", err
		}
		c, err := r.Engine.start(ctx, "bootlab-ci-"+j.slug(), from, options, mounts, jr.ws)
		if err != nil {
			return "", fmt.Errorf("starting the container of %s: %w", j.Name(), err)
		}
		jr.sh = c
		jr.home = "/root"
		jr.base, jr.basePath = r.containerBase(jr)
		where = fmt.Sprintf("container %s (%s, %s)", image, from, snap.describe())
		if snap.hit {
			for k, v := range snap.Env {
				jr.env[k], jr.ec.env[k] = v, v
			}
			jr.paths = append(jr.paths, snap.Paths...)
		}
	}
	defer jr.sh.close()
	fmt.Fprintf(r.Out, "== %s: %s\n", j.Name(), where)

	for _, layer := range []map[string]string{j.wf.Env, def.Env} {
		for k, v := range layer {
			x, err := jr.ec.expand(v)
			if err != nil {
				return where, err
			}
			jr.env[k], jr.ec.env[k] = x, x
		}
	}

	lastInstall := lastInstallStep(def)
	var unlock func()
	var errs []error
	failed := false
	for i, s := range def.Steps {
		label := fmt.Sprintf("%s %s", j.Name(), s.label(i))
		run, err := jr.ec.cond(s.If, failed)
		if err != nil {
			return where, err
		}
		if !run {
			fmt.Fprintf(r.Out, "-- %s: skipped (if: %s)\n", label, strings.TrimSpace(s.If))
			continue
		}
		if skipInstall && i <= lastInstall && isInstallStep(s) {
			fmt.Fprintf(r.Out, "-- %s: done in the snapshot %s\n", label, snap.image)
			continue
		}
		if r.VMLock != "" && vmRE.MatchString(s.Run) && unlock == nil {
			// From the first step that boots VMs to the end of the job: installs and
			// builds before it do not keep other VM work waiting.
			fmt.Fprintf(r.Out, "-- %s: waiting for the VM lock %s (the step boots VMs)\n", label, r.VMLock)
			if unlock, err = flockFile(ctx, r.VMLock); err != nil {
				return where, err
			}
			defer unlock()
		}
		fmt.Fprintf(r.Out, "-- %s\n", label)
		began := time.Now()
		stepCtx, cancel := ctx, context.CancelFunc(func() {})
		if s.TimeoutMinutes > 0 {
			stepCtx, cancel = context.WithTimeout(ctx, time.Duration(s.TimeoutMinutes)*time.Minute)
		}
		if s.Uses != "" {
			err = jr.standIn(stepCtx, i, s)
		} else {
			err = jr.script(stepCtx, i, s, i <= lastInstall && isInstallStep(s))
		}
		cancel()
		fmt.Fprintf(r.Out, "-- %s: %v in %s\n", label, ifErr(err, "ok"), time.Since(began).Round(100*time.Millisecond))
		if err != nil {
			failed = true
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
		}
		if i == lastInstall && jr.inCtr && !snap.hit && !failed {
			if err := r.saveSnapshot(ctx, jr, snap); err != nil {
				return where, err
			}
		}
	}
	if sum, err := os.ReadFile(jr.ec.env["__summary"]); err == nil && len(sum) > 0 {
		fmt.Fprintf(r.Out, "-- %s: job summary:\n%s\n", j.Name(), sum)
	}
	return where, errors.Join(errs...)
}

func ifErr(err error, ok string) any {
	if err != nil {
		return err
	}
	return ok
}

func (r *Runner) runID() string {
	if r.RunID == "" {
		r.RunID = fmt.Sprint(time.Now().UnixNano())
	}
	return r.RunID
}

// githubEnv is what GitHub's runner sets in every step.
func (jr *jobRun) githubEnv() []string {
	return []string{"CI=true", "GITHUB_ACTIONS=true", "RUNNER_OS=Linux", "RUNNER_ARCH=X64",
		"RUNNER_TEMP=" + jr.temp, "GITHUB_WORKSPACE=" + jr.ws, "GITHUB_RUN_ID=" + jr.r.runID(), "GITHUB_RUN_NUMBER=" + jr.r.runID(),
		"GITHUB_JOB=" + jr.job.ID, "GITHUB_WORKFLOW=" + jr.job.wf.Name, "GITHUB_REPOSITORY=bootlab/bootlab", "GITHUB_SERVER_URL=https://github.com",
		"GITHUB_EVENT_NAME=workflow_dispatch", "GITHUB_REF=refs/heads/main", "HOME=" + jr.home}
}

// goEgress is the part of this machine's Go environment that reaches the
// module proxy and checksum database from here (GOPROXY through an egress,
// GOFLAGS, GONOSUMDB, ...): set in every job, host or container, so Go in a
// job downloads the way Go here does. A GitHub runner needs none of it.
func goEgress() []string {
	names := []string{"GOPROXY", "GOFLAGS", "GONOSUMDB", "GONOSUMCHECK", "GONOPROXY", "GOPRIVATE", "GOSUMDB", "GOINSECURE"}
	out, err := exec.Command("go", append([]string{"env"}, names...)...).Output()
	if err != nil {
		return nil
	}
	var env []string
	for i, v := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if i < len(names) && v != "" {
			env = append(env, names[i]+"="+v)
		}
	}
	return env
}

// hostBase is a host job's starting environment: this machine's, without
// make test's own settings, a temporary HOME, and the real Go caches (so a
// host job neither recompiles the world nor downloads modules again).
func (r *Runner) hostBase(jr *jobRun) ([]string, string) {
	src := r.HostEnv
	if src == nil {
		src = os.Environ()
	}
	var env []string
	pathVar := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range src {
		k, v, _ := strings.Cut(kv, "=")
		if k == "PATH" {
			pathVar = v
		}
		if strings.HasPrefix(k, "BOOTLAB_") || strings.HasPrefix(k, "GITHUB_") || strings.HasPrefix(k, "RUNNER_") ||
			strings.HasPrefix(k, "XDG_") || k == "HOME" || k == "PATH" || strings.HasPrefix(k, "GO") || k == "CI" ||
			k == "MAKEFLAGS" || k == "MAKELEVEL" || k == "MFLAGS" {
			continue
		}
		env = append(env, kv)
	}
	if out, err := exec.Command("go", "env", "GOPATH", "GOCACHE", "GOMODCACHE").Output(); err == nil {
		if v := strings.Split(strings.TrimSpace(string(out)), "\n"); len(v) == 3 {
			env = append(env, "GOPATH="+v[0], "GOCACHE="+v[1], "GOMODCACHE="+v[2])
			pathVar += string(os.PathListSeparator) + filepath.Join(v[0], "bin")
		}
	}
	env = append(env, goEgress()...)
	return append(env, jr.githubEnv()...), pathVar
}

// hostCA is this machine's CA bundle. The container gets it (at caPath,
// SSL_CERT_FILE) because this machine reaches the registries through an
// egress with its own CA: without it Go's downloads fail with x509 errors.
const (
	hostCA = "/etc/ssl/certs/ca-certificates.crt"
	caPath = "/etc/bootlab-ci/ca-certificates.crt"
)

func (r *Runner) containerBase(jr *jobRun) ([]string, string) {
	env := jr.githubEnv()
	if _, err := os.Stat(hostCA); err == nil {
		env = append(env, "SSL_CERT_FILE="+caPath, "CURL_CA_BUNDLE="+caPath, "GIT_SSL_CAINFO="+caPath)
	}
	env = append(env, goEgress()...)
	env = append(env, "DEBIAN_FRONTEND=noninteractive", HereEnv+"=1")
	return env, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// mounts are the host directories a container job sees, each at the same
// path as on the host, so the runner can name files in either place: the
// workspace, RUNNER_TEMP, the cache and artefact stores, the Go caches and
// the setup-go toolchain, the CA bundle, and apt's proxy settings.
func (r *Runner) mounts(jr *jobRun) ([]string, error) {
	for _, d := range []string{r.cacheStore(), r.Artifacts, r.goCache("mod"), r.goCache("build"), r.InputFiles()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	m := []string{jr.ws + ":" + jr.ws, jr.temp + ":" + jr.temp, r.cacheStore() + ":" + r.cacheStore(),
		r.Artifacts + ":" + r.Artifacts, r.goCache("mod") + ":" + r.goCache("mod"), r.goCache("build") + ":" + r.goCache("build"),
		r.InputFiles() + ":" + r.InputFiles() + ":ro"}
	if _, err := os.Stat(hostCA); err == nil {
		m = append(m, hostCA+":"+caPath+":ro")
	}
	for _, s := range jr.def.Steps {
		if strings.HasPrefix(s.Uses, "actions/setup-go@") {
			goroot, err := r.toolchain(jr, s)
			if err != nil {
				return nil, err
			}
			m = append(m, goroot+":"+goroot+":ro")
		}
	}
	proxies, _ := filepath.Glob("/etc/apt/apt.conf.d/*")
	for _, f := range proxies {
		if b, err := os.ReadFile(f); err == nil && aptProxyRE.Match(b) {
			m = append(m, f+":"+f+":ro")
		}
	}
	return m, nil
}

var aptProxyRE = regexp.MustCompile(`(?i)Acquire::[a-z]+::Proxy`)

func (r *Runner) cacheStore() string {
	if r.Cache != "" {
		return r.Cache
	}
	return filepath.Join(r.State, "cache")
}

// InputFiles is where files a job's inputs name go (file:// URLs of
// candidate ISOs for bisect): container jobs see it at the same path.
func (r *Runner) InputFiles() string { return filepath.Join(r.State, "inputs") }

// goCache is the persistent Go module (mod) or build (build) cache of the
// container jobs: setup-go's cache: true, kept between runs.
func (r *Runner) goCache(kind string) string { return filepath.Join(r.State, "go", kind) }

func setEnv(env []string, k, v string) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, k+"=") })
	return append(out, k+"="+v)
}

// stepEnv is a step's environment: the base, PATH with GITHUB_PATH's
// additions, the workflow's, job's and GITHUB_ENV's variables, the step's.
func (jr *jobRun) stepEnv(s step, files map[string]string) ([]string, error) {
	env := slices.Clone(jr.base)
	p := jr.basePath
	if len(jr.paths) > 0 {
		p = strings.Join(jr.paths, ":") + ":" + p
	}
	env = append(env, "PATH="+p)
	for k, v := range files {
		env = append(env, k+"="+v)
	}
	keys := make([]string, 0, len(jr.env))
	for k := range jr.env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, "__") {
			env = setEnv(env, k, jr.env[k])
		}
	}
	for k, v := range s.Env {
		x, err := jr.ec.expand(v)
		if err != nil {
			return nil, err
		}
		env = setEnv(env, k, x)
	}
	return env, nil
}

// script runs a run: step as GitHub does: bash -e (or the shell the step
// names) in the workspace, then reads back GITHUB_ENV, GITHUB_PATH and
// GITHUB_OUTPUT.
func (jr *jobRun) script(ctx context.Context, i int, s step, install bool) error {
	body, err := jr.ec.expand(s.Run)
	if err != nil {
		return err
	}
	n := i + 1
	file := filepath.Join(jr.temp, fmt.Sprintf("step-%d.sh", n))
	files := map[string]string{
		"GITHUB_ENV":          filepath.Join(jr.temp, fmt.Sprintf("env-%d", n)),
		"GITHUB_OUTPUT":       filepath.Join(jr.temp, fmt.Sprintf("output-%d", n)),
		"GITHUB_PATH":         filepath.Join(jr.temp, fmt.Sprintf("path-%d", n)),
		"GITHUB_STEP_SUMMARY": filepath.Join(jr.temp, "step-summary.md"),
	}
	jr.ec.env["__summary"] = files["GITHUB_STEP_SUMMARY"]
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		return err
	}
	for k, f := range files {
		if k == "GITHUB_STEP_SUMMARY" {
			fh, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			fh.Close()
			continue
		}
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return err
		}
	}
	shell := s.Shell
	if shell == "" {
		shell = jr.job.wf.Defaults.Run.Shell
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
	env, err := jr.stepEnv(s, files)
	if err != nil {
		return err
	}
	runErr := jr.sh.run(ctx, filepath.Join(jr.ws, s.Dir), env, argv, jr.r.Out)
	vars, err := readEnvFile(files["GITHUB_ENV"])
	if err != nil {
		return err
	}
	for k, v := range vars {
		jr.env[k], jr.ec.env[k] = v, v
		if install {
			jr.installEnv[k] = v
		}
	}
	paths, err := os.ReadFile(files["GITHUB_PATH"])
	if err != nil {
		return err
	}
	for _, p := range strings.Split(strings.TrimSpace(string(paths)), "\n") {
		if p = strings.TrimSpace(p); p != "" {
			jr.paths = append([]string{p}, jr.paths...)
			if install {
				jr.installPaths = append([]string{p}, jr.installPaths...)
			}
		}
	}
	if s.ID != "" {
		outs, err := readEnvFile(files["GITHUB_OUTPUT"])
		if err != nil {
			return err
		}
		jr.ec.steps[s.ID] = outs
	}
	if runErr != nil {
		return fmt.Errorf("the script failed: %w", runErr)
	}
	return nil
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

// installRE finds a step that installs packages: the container's state
// after the last such step is what a snapshot keeps.
var installRE = regexp.MustCompile(`(?m)\bapt(-get)? +(-\S+ +)*install\b|\bmake +deps\b|\.ci/deps\.sh`)

func isInstallStep(s step) bool { return s.Run != "" && installRE.MatchString(s.Run) }

func lastInstallStep(j *job) int {
	last := -1
	for i, s := range j.Steps {
		if isInstallStep(s) {
			last = i
		}
	}
	return last
}

// vmRE finds a step that boots VMs or builds images: the job holds the VM
// lock from there to its end.
var vmRE = regexp.MustCompile(`\bmake +(vm|scenarios|demo|bench|soak|bisect-demo|test)\b|bootlab +(bisect|run|demo|bench)\b`)

func containerOf(j *job) (image, options string) {
	switch c := j.Container.(type) {
	case string:
		return c, ""
	case map[string]any:
		image, _ = c["image"].(string)
		options, _ = c["options"].(string)
	}
	return image, options
}

// thisMachineIs checks that the machine the runner runs on is the image a
// container job wants (only debian:12 is known).
func thisMachineIs(image string) error {
	if image != "debian:12" {
		return fmt.Errorf("only debian:12 can be stood in for by this machine")
	}
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return fmt.Errorf("reading /etc/os-release: %w", err)
	}
	if !bytes.Contains(b, []byte("\nID=debian")) && !bytes.HasPrefix(b, []byte("ID=debian")) || !bytes.Contains(b, []byte(`VERSION_ID="12"`)) {
		return fmt.Errorf("this machine is not Debian 12:\n%s", b)
	}
	return nil
}

// HereEnv, set to 1, tells the runner that this machine is the fresh
// container the container jobs ask for (the runner sets it in every
// container it starts; the fresh workflow sets it in its job), so a runner
// started inside one runs container jobs here rather than nest podman. It is
// never guessed from /.dockerenv: a development machine may be a container
// too, and installing a job's packages on it is not what was asked.
const HereEnv = "BOOTLAB_CI_HERE"

// Here reports whether HereEnv says this machine is the fresh container.
func Here() bool { return os.Getenv(HereEnv) == "1" }

// flockFile holds an exclusive flock on path until unlock is called. It
// waits in the kernel's queue like flock(1) does (a polling LOCK_NB would
// lose every hand-over to the blocked waiters).
func flockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("opening the lock %s: %w", path, err)
	}
	got := make(chan error, 1)
	go func() { got <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// The waiter cannot be cancelled: release the lock as soon as it is granted.
		go func() { <-got; f.Close() }()
		return nil, fmt.Errorf("waiting for the lock %s: %w", path, ctx.Err())
	}
}

// snapshot is a container kept as it stood after a job's install steps.
type snapshot struct {
	key   string
	base  string // the image the job names, as built here
	image string // the snapshot's tag
	hit   bool
	Env   map[string]string `json:"env"`   // GITHUB_ENV written by the install steps
	Paths []string          `json:"paths"` // GITHUB_PATH written by the install steps
}

func (s snapshot) describe() string {
	switch {
	case s.key == "":
		return "no install steps, no snapshot"
	case s.hit:
		return "install steps unchanged: from the snapshot"
	}
	return "install steps new or changed: from bare image, snapshot after them"
}

// snapshotFor keys a job's snapshot by the base image, the container
// options, the text of every step up to the last install step and
// .ci/deps.sh, and finds out whether it exists.
func (r *Runner) snapshotFor(jr *jobRun, image, options string) (snapshot, error) {
	base, err := r.Engine.image(image)
	if err != nil {
		return snapshot{}, err
	}
	s := snapshot{base: base}
	if lastInstallStep(jr.def) < 0 {
		return s, nil
	}
	deps, err := r.repoFile(".ci/deps.sh")
	if err != nil {
		return s, fmt.Errorf("reading .ci/deps.sh for the snapshot key: %w", err)
	}
	if s.key, err = snapshotKey(r.Engine.imageID(base), options, jr.def, deps); err != nil {
		return s, err
	}
	s.image = "localhost/bootlab-ci-" + strings.ToLower(jr.job.slug()) + ":" + s.key
	meta := filepath.Join(r.State, "snapshots", jr.job.slug()+"-"+s.key+".json")
	if r.Engine.imageID(s.image) != "" {
		if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, &s) == nil {
			s.hit = true
		}
	}
	return s, nil
}

// snapshotKey is what a job's snapshot is kept under: the base image's id,
// the container options, every step up to the last install step (their
// text, uses: and with: alike) and .ci/deps.sh. The steps after it do not
// count: they run on every start.
func snapshotKey(baseID, options string, j *job, deps []byte) (string, error) {
	last := lastInstallStep(j)
	if last < 0 {
		return "", nil
	}
	h := sha256.New()
	fmt.Fprintf(h, "base %s\noptions %s\n", baseID, options)
	for _, st := range j.Steps[:last+1] {
		b, err := yaml.Marshal(st)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	h.Write(deps)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func (r *Runner) saveSnapshot(ctx context.Context, jr *jobRun, s snapshot) error {
	c, ok := jr.sh.(*container)
	if !ok || s.key == "" {
		return nil
	}
	began := time.Now()
	if err := r.Engine.commit(ctx, c.name, s.image); err != nil {
		return fmt.Errorf("keeping the container after the install steps: %w", err)
	}
	s.Env, s.Paths = jr.installEnv, jr.installPaths
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	dir := filepath.Join(r.State, "snapshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, jr.job.slug()+"-"+s.key+".json"), b, 0o644); err != nil {
		return err
	}
	r.Engine.pruneSnapshots(ctx, s.image)
	fmt.Fprintf(r.Out, "-- %s: snapshot %s kept in %s\n", jr.job.Name(), s.image, time.Since(began).Round(100*time.Millisecond))
	return nil
}

// repoFile reads a file of the tree checkout copies.
func (r *Runner) repoFile(name string) ([]byte, error) {
	if r.HeadOnly {
		return exec.Command("git", "-C", r.Repo, "show", "HEAD:"+name).Output()
	}
	return os.ReadFile(filepath.Join(r.Repo, name))
}

// hostShell runs steps on this machine.
type hostShell struct{}

func (hostShell) run(ctx context.Context, dir string, env []string, argv []string, out io.Writer) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, out, out
	// The step's whole process group goes on a timeout, not only bash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd.Run()
}

func (hostShell) close() {}
