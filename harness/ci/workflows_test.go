package ci

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func loadWorkflow(t *testing.T, name string) *workflow {
	t.Helper()
	wf, err := readWorkflow(filepath.Join(repoRoot(t), ".github", "workflows", name))
	if err != nil {
		t.Fatal(err)
	}
	return wf
}

func TestActionlint(t *testing.T) {
	bin := requireTool(t, "actionlint",
		"go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12")
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ci.yml", "nightly.yml", "bisect.yml"} {
		if !slices.Contains(files, filepath.Join(root, ".github", "workflows", want)) {
			t.Errorf(".github/workflows/%s is missing", want)
		}
	}
	cmd := exec.Command(bin, append([]string{"-no-color"}, files...)...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("actionlint: %v\n%s", err, out.String())
	}
	// GitHub runners have shellcheck, and actionlint uses it when present;
	// without it here, run-scripts would go unchecked and fail only in CI.
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Fatal("shellcheck not found: actionlint would skip checking run: scripts that GitHub's actionlint run checks; install it with: apt-get install shellcheck")
	}
}

// shardMatrix returns the nightly scenarios job's shard list after checking
// the matrix has that single axis: strategy.job-total is the shard count in
// the -shard flag, and any other axis or include/exclude would change it.
func shardMatrix(t *testing.T, j *job) []int {
	t.Helper()
	m := j.Strategy.Matrix
	if len(m) != 1 || m["shard"] == nil {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		t.Fatalf("nightly scenarios matrix has axes %v; want exactly one, shard (job-total must equal the shard count)", keys)
	}
	raw, ok := m["shard"].([]any)
	if !ok || len(raw) == 0 {
		t.Fatalf("matrix.shard is %v; want a non-empty list of shard numbers", m["shard"])
	}
	var shards []int
	for _, v := range raw {
		i, ok := v.(int)
		if !ok {
			t.Fatalf("matrix.shard entry %v (%T) is not an integer", v, v)
		}
		shards = append(shards, i)
	}
	sorted := slices.Clone(shards)
	slices.Sort(sorted)
	for k, i := range sorted {
		if i != k+1 {
			t.Fatalf("matrix.shard = %v; want exactly 1..%d, each once (shards are 1-based and n is the list length)", shards, len(shards))
		}
	}
	return shards
}

func TestNightlyShardsCoverEveryScenarioOnce(t *testing.T) {
	wf := loadWorkflow(t, "nightly.yml")
	if _, ok := wf.On["schedule"]; !ok {
		t.Error("nightly.yml has no schedule trigger")
	}
	if _, ok := wf.On["workflow_dispatch"]; !ok {
		t.Error("nightly.yml cannot be started by hand (workflow_dispatch)")
	}
	j, ok := wf.Jobs["scenarios"]
	if !ok {
		t.Fatal("nightly.yml has no scenarios job")
	}
	if j.Strategy.FailFast == nil || *j.Strategy.FailFast {
		t.Error("nightly scenarios job must set fail-fast: false, or one failing shard cancels the others and their run directories are lost")
	}
	shards := shardMatrix(t, j)

	var runStep *step
	for k := range j.Steps {
		if strings.Contains(j.Steps[k].Run, "make scenarios") {
			if runStep != nil {
				t.Fatalf("two steps run make scenarios (%q and %q); each shard must run the suite once", runStep.Name, j.Steps[k].Name)
			}
			runStep = &j.Steps[k]
		}
	}
	if runStep == nil {
		t.Fatal("no step in the nightly scenarios job runs make scenarios")
	}
	const shardArg = "SHARD=${{ matrix.shard }}/${{ strategy.job-total }}"
	if !strings.Contains(runStep.Run, shardArg) {
		t.Errorf("the scenarios step must pass %q; got:\n%s", shardArg, runStep.Run)
	}
	if strings.Contains(runStep.Run, "-run") {
		t.Errorf("the scenarios step also filters with -run, so shards would not cover every scenario:\n%s", runStep.Run)
	}

	names, err := ScenarioTests(filepath.Join(repoRoot(t), "scenarios"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d scenarios over %d shards", len(names), len(shards))
	if err := coverage(names, shards); err != nil {
		t.Error(err)
	}
	if len(names) > 0 {
		requireShardFlag(t, filepath.Join(repoRoot(t), "scenarios"))
	}
}

// coverage checks that dealing names to the given shard numbers (out of
// len(shards)) puts every name in exactly one shard.
func coverage(names []string, shards []int) error {
	n := len(shards)
	count := map[string]int{}
	for _, i := range shards {
		for _, name := range Shard(names, i, n) {
			count[name]++
		}
	}
	var bad []string
	for _, name := range names {
		if count[name] != 1 {
			bad = append(bad, fmt.Sprintf("%s in %d shards", name, count[name]))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("nightly matrix %v does not run every scenario exactly once: %s", shards, strings.Join(bad, ", "))
	}
	return nil
}

func TestCoverageDetectsGapsAndDuplicates(t *testing.T) {
	names := []string{"TestA", "TestB", "TestC", "TestD"}
	if err := coverage(names, []int{1, 2, 3}); err != nil {
		t.Errorf("a complete matrix was rejected: %v", err)
	}
	// Shards 1,1,3 of 3: shard 2's scenarios run nowhere, shard 1's twice.
	err := coverage(names, []int{1, 1, 3})
	if err == nil || !strings.Contains(err.Error(), "TestB in 0 shards") || !strings.Contains(err.Error(), "TestA in 2 shards") {
		t.Errorf("coverage([1 1 3]) = %v; want TestB missing and TestA twice", err)
	}
}

// requireShardFlag fails when the scenarios package does not define the
// -shard flag the nightly passes: go test would stop with "flag provided but
// not defined" on every shard.
func requireShardFlag(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(`"shard"`)) {
			return
		}
	}
	t.Errorf("scenarios/ defines no \"shard\" flag, but nightly.yml runs make scenarios SHARD=i/n (go test ./scenarios -shard i/n); implement it with ci.ScenarioTests + ci.Shard (see docs/ci.md)")
}

func TestNightlyReportsSummaryAndTrend(t *testing.T) {
	wf := loadWorkflow(t, "nightly.yml")
	j, ok := wf.Jobs["report"]
	if !ok {
		t.Fatal("nightly.yml has no report job")
	}
	if j.If != "always()" {
		t.Errorf("report job has if: %q; want always() so failed nights still get a summary", j.If)
	}
	var script strings.Builder
	for _, s := range j.Steps {
		script.WriteString(s.Run)
	}
	for _, want := range []string{"report --summary", "report --trend", "GITHUB_STEP_SUMMARY", ".ci/merge-notes.sh"} {
		if !strings.Contains(script.String(), want) {
			t.Errorf("nightly report job never runs %q", want)
		}
	}
}

func TestBisectWorkflowFetchesVerifiedISOs(t *testing.T) {
	wf := loadWorkflow(t, "bisect.yml")
	for _, in := range []string{"isos", "scenario", "parallel"} {
		if _, ok := wf.inputDefault(in); !ok {
			t.Errorf("bisect.yml has no %q input", in)
		}
	}
	// The default predicate must be a scenario that exists, so the form is
	// usable as offered.
	def, _ := wf.inputDefault("scenario")
	names, err := ScenarioTests(filepath.Join(repoRoot(t), "scenarios"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, def) {
		t.Errorf("bisect.yml's default scenario %q is not a scenario in scenarios/ (%v)", def, names)
	}
	var fetches, runsBisect, uploads bool
	for _, j := range wf.Jobs {
		for _, s := range j.Steps {
			cmds, err := commands(s.Run, nil)
			if err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
			for _, c := range cmds {
				if c.args[0] == ".ci/fetch-isos.sh" {
					fetches = true
				}
				if sub, rest, ok := bootlabArgs(c.args); ok && sub == "bisect" {
					runsBisect = true
					if !slices.ContainsFunc(rest, func(a string) bool { return strings.HasSuffix(a, "/candidates.txt") }) {
						t.Errorf("bootlab bisect does not read the list .ci/fetch-isos.sh writes (candidates.txt): %s", c)
					}
				}
			}
			// Inputs in ${{ }} inside run: would be pasted into the script
			// unquoted; they travel through env instead.
			if strings.Contains(s.Run, "${{") {
				t.Errorf("bisect step %q expands expressions inside its script; pass inputs through env", s.Name)
			}
			if strings.HasPrefix(s.Uses, "actions/upload-artifact@") && s.If == "always()" {
				uploads = true
			}
		}
	}
	if !fetches {
		t.Error("bisect.yml does not download and verify the candidate ISOs with .ci/fetch-isos.sh")
	}
	if !runsBisect {
		t.Error("bisect.yml never runs bootlab bisect")
	}
	if !uploads {
		t.Error("bisect.yml does not upload its directory with if: always()")
	}
}

func TestFetchISOsVerifiesDigests(t *testing.T) {
	requireTool(t, "curl", "apt-get install curl")
	dir := t.TempDir()
	script := filepath.Join(repoRoot(t), ".ci", "fetch-isos.sh")
	var entries []string
	sums := map[string]string{}
	for _, name := range []string{"old", "new"} {
		p := filepath.Join(dir, name+".iso")
		require.NoError(t, os.WriteFile(p, []byte("iso "+name), 0o644))
		out, err := exec.Command("sha256sum", p).Output()
		require.NoError(t, err)
		sums[name] = strings.Fields(string(out))[0]
		entries = append(entries, "file://"+p+"#sha256="+sums[name])
	}
	out, err := exec.Command("bash", script, filepath.Join(dir, "ok"), strings.Join(entries, " ")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	list, err := os.ReadFile(filepath.Join(dir, "ok", "candidates.txt"))
	require.NoError(t, err)
	require.Equal(t, "01-old iso="+filepath.Join(dir, "ok", "01-old.iso")+"\n02-new iso="+filepath.Join(dir, "ok", "02-new.iso")+"\n",
		string(list), "one list-file line per ISO, in the order given")

	// A digest that does not match: exit 1, and the file is gone.
	wrong := "file://" + filepath.Join(dir, "old.iso") + "#sha256=" + sums["new"]
	cmd := exec.Command("bash", script, filepath.Join(dir, "bad"), wrong)
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), "%s", out)
	require.Contains(t, string(out), "refusing to boot it")
	require.NoFileExists(t, filepath.Join(dir, "bad", "01-old.iso"))

	// --lazy lists local files by path once their digest is checked (make ci-local's
	// candidates), and refuses one whose digest does not match.
	out, err = exec.Command("bash", script, "--lazy", "--profile", "debian-installer", filepath.Join(dir, "lazy"), strings.Join(entries, " ")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	list, err = os.ReadFile(filepath.Join(dir, "lazy", "candidates.txt"))
	require.NoError(t, err)
	require.Equal(t, "01-old iso=\""+filepath.Join(dir, "old.iso")+"\" profile=debian-installer\n02-new iso=\""+filepath.Join(dir, "new.iso")+"\" profile=debian-installer\n",
		string(list))
	cmd = exec.Command("bash", script, "--lazy", filepath.Join(dir, "lazybad"), wrong)
	out, _ = cmd.CombinedOutput()
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), "%s", out)
	require.Contains(t, string(out), "refusing to boot it")

	// No digest at all: a usage error before anything is downloaded.
	cmd = exec.Command("bash", script, filepath.Join(dir, "none"), "file://"+filepath.Join(dir, "old.iso"))
	out, _ = cmd.CombinedOutput()
	require.Equal(t, 2, cmd.ProcessState.ExitCode(), "%s", out)
	require.NoDirExists(t, filepath.Join(dir, "none"))
}

func TestCIJobsCallMakeTargets(t *testing.T) {
	wf := loadWorkflow(t, "ci.yml")
	for _, trig := range []string{"push", "pull_request"} {
		if _, ok := wf.On[trig]; !ok {
			t.Errorf("ci.yml does not run on %s", trig)
		}
	}
	targets := map[string]bool{}
	for _, name := range wf.jobNames() {
		for _, s := range wf.Jobs[name].Steps {
			cmds, err := commands(s.Run, nil)
			require.NoError(t, err)
			for _, c := range cmds {
				if c.args[0] == "make" {
					for _, a := range c.args[1:] {
						targets[a] = true
					}
				}
			}
			if strings.HasPrefix(s.Uses, "actions/setup-go@") && s.With["cache"] != "true" {
				t.Errorf("setup-go in ci.yml job %s without cache: true re-downloads Go modules every run", name)
			}
		}
	}
	for _, want := range []string{"lint", "unit", "nixcheck", "vm"} {
		if !targets[want] {
			t.Errorf("ci.yml never runs make %s", want)
		}
	}
}

// vmTargets are the make targets and bootlab commands that boot VMs or build
// images, so their jobs must run where make test is proven: Debian 12.
var vmTargets = []string{"vm", "scenarios", "demo", "bench", "soak", "bisect-demo"}

// TestJobsFollowTheRules checks, for every job of every workflow, what
// issue 14 asks: Debian 12 for jobs that need Debian packages or boot VMs,
// make targets instead of package lists, caches restored first and saved
// even after a failure, and uploads of the job's notes directory that fail
// when it is empty and never carry disk images.
func TestJobsFollowTheRules(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), ".github", "workflows", "*.yml"))
	require.NoError(t, err)
	for _, file := range files {
		wf, err := readWorkflow(file)
		require.NoError(t, err)
		for _, name := range wf.jobNames() {
			checkJobRules(t, wf, name)
		}
	}
}

func checkJobRules(t *testing.T, wf *workflow, name string) {
	j := wf.Jobs[name]
	where := wf.file + " job " + name
	var bootsVMs, needsDebian, setsNotes bool
	restores, saves := map[string]string{}, map[string]string{}
	ec := newExprCtx(wf, j, os.TempDir(), ".")
	for _, s := range j.Steps {
		script, err := ec.expand(s.Run)
		require.NoError(t, err, where)
		cmds, err := commands(script, nil)
		require.NoError(t, err, where)
		for _, c := range cmds {
			a := c.args
			switch {
			case a[0] == "make" && len(a) > 1 && slices.Contains(vmTargets, a[1]):
				bootsVMs = true
			case a[0] == "make" && len(a) > 1 && a[1] == "deps" && !slices.ContainsFunc(a, func(x string) bool { return strings.HasPrefix(x, "DEPS=") }):
				needsDebian = true
			case a[0] == "go" && len(a) > 1 && (a[1] == "test" || a[1] == "list"):
				t.Errorf("%s runs `%s`: jobs call make targets, never their own package lists", where, c)
			}
			if sub, _, ok := bootlabArgs(a); ok && sub != "report" && sub != "night" { // both read run records only
				bootsVMs = true
			}
		}
		if strings.Contains(s.Run, "BOOTLAB_NOTES=") && strings.Contains(s.Run, "GITHUB_ENV") {
			setsNotes = true
		}
		action, _, _ := strings.Cut(s.Uses, "@")
		switch action {
		case "actions/cache":
			t.Errorf("%s uses actions/cache, which saves only when the job succeeds; use cache/restore + cache/save with if: always()", where)
		case "actions/cache/restore":
			restores[s.With["path"]] = s.With["key"]
		case "actions/cache/save":
			saves[s.With["path"]] = s.With["key"]
			if !strings.HasPrefix(s.If, "always()") {
				t.Errorf("%s saves the cache %s with if: %q; want always() so a red run keeps what it built", where, s.With["path"], s.If)
			}
		case "actions/upload-artifact":
			if s.If != "always()" {
				t.Errorf("%s uploads with if: %q; want always() so failing runs keep their evidence", where, s.If)
			}
			if s.With["if-no-files-found"] != "error" {
				t.Errorf("%s uploads with if-no-files-found: %q; want error, so a run that left no records fails", where, s.With["if-no-files-found"])
			}
			lines := strings.Split(strings.TrimSpace(s.With["path"]), "\n")
			if strings.TrimSpace(lines[0]) != "${{ env.BOOTLAB_NOTES }}" {
				t.Errorf("%s uploads %q; want the job's notes directory, ${{ env.BOOTLAB_NOTES }}", where, lines[0])
			}
			for _, ext := range []string{"*.img", "*.qcow2"} {
				if !strings.Contains(s.With["path"], "!${{ env.BOOTLAB_NOTES }}/**/"+ext) {
					t.Errorf("%s upload does not exclude %s disk images", where, ext)
				}
			}
		}
	}
	for p, key := range restores {
		if saves[p] != key {
			t.Errorf("%s restores the cache %s but never saves it under the same key", where, p)
		}
		if p == "${{ env.BOOTLAB_CACHE }}" && (!strings.Contains(key, "artifacts/images/**") || !strings.Contains(key, "provisioner/**")) {
			t.Errorf("%s image cache key %q is not keyed by the image inputs (artifacts/images, provisioner)", where, key)
		}
	}
	for _, s := range j.Steps {
		if strings.HasPrefix(s.Uses, "actions/upload-artifact@") && !setsNotes && j.Env["BOOTLAB_NOTES"] == "" {
			t.Errorf("%s uploads ${{ env.BOOTLAB_NOTES }} but never sets BOOTLAB_NOTES", where)
		}
	}
	if bootsVMs || needsDebian {
		image, options := containerOf(j)
		if image != "debian:12" {
			t.Errorf("%s needs Debian packages or boots VMs but runs in %q; want container debian:12, where make test is proven", where, image)
		}
		if bootsVMs && !strings.Contains(options, "--privileged") {
			t.Errorf("%s boots VMs in a container without --privileged (no /dev/kvm, no mounts for mmdebstrap)", where)
		}
	}
}

func TestUploadSetExcludesDiskImages(t *testing.T) {
	notes := t.TempDir()
	run := filepath.Join(notes, "2026-12-01T02-17-00Z-standard")
	require.NoError(t, os.MkdirAll(filepath.Join(run, "captures"), 0o755))
	for _, f := range []string{"serial.log", "disk0.img", "captures/ip.txt", "overlay.qcow2"} {
		require.NoError(t, os.WriteFile(filepath.Join(run, f), []byte("x"), 0o644))
	}
	got, err := uploadSet(notes + "\n!" + notes + "/**/*.img\n!" + notes + "/**/*.qcow2\n")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{filepath.Join(run, "serial.log"), filepath.Join(run, "captures", "ip.txt")}, got)

	all, err := uploadSet(notes)
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(all, isDiskImage), "without the exclusions the disk images would be uploaded: %v", all)

	none, err := uploadSet(filepath.Join(notes, "absent"))
	require.NoError(t, err)
	require.Empty(t, none)
}

// TestWorkflowsRunHere runs the workflow runner inside make unit: the jobs
// that need no VM run on this machine as written in a clean clone of HEAD,
// and the command lines of all jobs are checked against the repository.
func TestWorkflowsRunHere(t *testing.T) {
	ws, facts := cleanClone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	jobs := loadJobs(t, ws)
	// The nightly report merges what the shards uploaded: one synthetic shard.
	artifacts := t.TempDir()
	require.NoError(t, fakeShard(filepath.Join(artifacts, "work-notes-shard-1")))
	var log bytes.Buffer
	r := &Runner{Repo: ws, HeadOnly: true, State: filepath.Join(filepath.Dir(ws), "state"), Artifacts: artifacts, Out: &log}
	ran := map[string]bool{}
	checked := map[string]bool{}
	for _, j := range jobs {
		id := j.wf.file + "/" + j.ID
		if !checked[id] {
			checked[id] = true
			for _, e := range facts.checkJob(ctx, j.wf, j.ID, t.TempDir()) {
				t.Error(e)
			}
		}
		if why := jobCost(j.wf, j.ID); why != "" {
			t.Logf("%s: commands checked, not run here: %s", id, why)
			continue
		}
		ran[id] = true
		t.Run(j.Workflow()+"-"+j.ID, func(t *testing.T) {
			log.Reset()
			res := r.Run(ctx, j)
			t.Logf("%s ran on %s in %s", j.Name(), res.Where, res.Took.Round(time.Millisecond))
			require.NoError(t, res.Err, "the job's log:\n%s", tail(log.String(), 6000))
			require.Empty(t, res.Skipped)
			jobWS := filepath.Join(r.State, "work", j.slug(), repoName)
			status, err := exec.Command("git", "-C", jobWS, "status", "--porcelain", "--ignored").Output()
			require.NoError(t, err)
			require.Empty(t, string(status), "%s wrote into the checkout; run records belong under $BOOTLAB_NOTES", id)
		})
	}
	// The cheap jobs run; the VM jobs are checked only.
	for _, id := range []string{"ci.yml/nix", "nightly.yml/report"} {
		require.True(t, ran[id], "%s no longer runs in make test; its commands must stay cheap", id)
	}
	for _, id := range []string{"ci.yml/integration", "ci.yml/unit", "nightly.yml/scenarios", "bisect.yml/bisect"} {
		require.False(t, ran[id], "%s would boot VMs or repeat make test inside make test", id)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// TestWorkflowCheckCatchesBreakage breaks the real workflows the ways a
// rename breaks them and expects the runner's check to say so.
func TestWorkflowCheckCatchesBreakage(t *testing.T) {
	ws, facts := cleanClone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		file, old, new, want string
	}{
		{"ci.yml", "run: make vm\n", "run: make vms\n", `the Makefile has no target "vms"`},
		{"ci.yml", "run: make nixcheck\n", "run: make nixcheck NIXFLAGS=-v\n", "neither sets nor reads the variable NIXFLAGS"},
		{"nightly.yml", "run: make scenarios SHARD=", "run: make scenarios SHARDS=", "neither sets nor reads the variable SHARDS"},
		{"bisect.yml", "--parallel \"$PARALLEL\"", "--paralel \"$PARALLEL\"", "bootlab bisect has no flag -paralel"},
		{"bisect.yml", "default: TestCleanDisk", "default: TestBootToRootShell", `no scenario "TestBootToRootShell"`},
		{"bisect.yml", "go run ./harness/cmd/bootlab bisect", "go run ./harness/cmd/bootlab bisekt", `bootlab has no command "bisekt"`},
		{"nightly.yml", "run: .ci/merge-notes.sh", "run: .ci/ci-merge-notes.sh", ".ci/ci-merge-notes.sh is not an executable file"},
		{"ci.yml", "run: make unit\n", "run: go test -count=1 ./scenarios -shrd 1/4\n", "defines the flag -shrd"},
		{"ci.yml", "run: make unit\n", "run: go test -run '^TestNoSuchScenario$' ./scenarios\n", "-run names TestNoSuchScenario"},
		{"ci.yml", "run: make unit\n", "run: go test ./no/such/pkg\n", "go list ./no/such/pkg"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(ws, ".github", "workflows", tc.file))
			require.NoError(t, err)
			require.Contains(t, string(data), tc.old, "the mutation no longer applies to %s", tc.file)
			wf, err := parseWorkflow(tc.file, []byte(strings.Replace(string(data), tc.old, tc.new, 1)))
			require.NoError(t, err)
			var errs []string
			for _, name := range wf.jobNames() {
				errs = append(errs, facts.checkJob(ctx, wf, name, t.TempDir())...)
			}
			require.NotEmpty(t, errs, "breaking %s (%q -> %q) went unnoticed", tc.file, tc.old, tc.new)
			require.Contains(t, strings.Join(errs, "\n"), tc.want)
			// The unbroken workflow passes, so the error is the mutation's.
			orig, err := parseWorkflow(tc.file, data)
			require.NoError(t, err)
			for _, name := range orig.jobNames() {
				require.Empty(t, facts.checkJob(ctx, orig, name, t.TempDir()))
			}
		})
	}
}
