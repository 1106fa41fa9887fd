package ci

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// workflow is the part of a GitHub workflow these checks read.
type workflow struct {
	On   map[string]any `yaml:"on"`
	Jobs map[string]job `yaml:"jobs"`
}

type job struct {
	Needs    any `yaml:"needs"`
	If       string
	Strategy struct {
		FailFast *bool          `yaml:"fail-fast"`
		Matrix   map[string]any `yaml:"matrix"`
	} `yaml:"strategy"`
	Steps []step `yaml:"steps"`
}

type step struct {
	Name string            `yaml:"name"`
	If   string            `yaml:"if"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
}

func loadWorkflow(t *testing.T, name string) workflow {
	t.Helper()
	path := filepath.Join(repoRoot(t), ".github", "workflows", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	var wf workflow
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatalf("%s does not parse as a workflow: %v", name, err)
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
func shardMatrix(t *testing.T, j job) []int {
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
		if strings.Contains(j.Steps[k].Run, "./scenarios") {
			if runStep != nil {
				t.Fatalf("two steps run ./scenarios (%q and %q); each shard must run the suite once", runStep.Name, j.Steps[k].Name)
			}
			runStep = &j.Steps[k]
		}
	}
	if runStep == nil {
		t.Fatal("no step in the nightly scenarios job runs ./scenarios")
	}
	const shardFlag = "-shard ${{ matrix.shard }}/${{ strategy.job-total }}"
	if !strings.Contains(runStep.Run, shardFlag) {
		t.Errorf("the scenarios step must pass %q; got:\n%s", shardFlag, runStep.Run)
	}
	if strings.Contains(runStep.Run, " -run ") || strings.Contains(runStep.Run, " -run=") {
		t.Errorf("the scenarios step also filters with -run, so shards would not cover every scenario:\n%s", runStep.Run)
	}
	if !strings.Contains(runStep.Run, "-notes") {
		t.Errorf("the scenarios step does not pass -notes, so run directories land where the upload does not look")
	}

	var uploads int
	for _, s := range j.Steps {
		if strings.HasPrefix(s.Uses, "actions/upload-artifact@") && strings.Contains(s.With["path"], "docs/work-notes") {
			uploads++
			if s.If != "always()" {
				t.Errorf("work-notes upload has if: %q; want always() so failing runs keep their evidence", s.If)
			}
		}
	}
	if uploads != 1 {
		t.Errorf("nightly scenarios job uploads docs/work-notes %d times; want once per shard", uploads)
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
	t.Errorf("scenarios/ defines no \"shard\" flag, but nightly.yml runs go test ./scenarios -shard i/n; implement it with ci.ScenarioTests + ci.Shard (see docs/ci.md)")
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
	for _, want := range []string{"report --summary", "report --trend", "GITHUB_STEP_SUMMARY", "ci-merge-notes.sh"} {
		if !strings.Contains(script.String(), want) {
			t.Errorf("nightly report job never runs %q", want)
		}
	}
}

func TestBisectWorkflowTakesCandidatesAndPredicate(t *testing.T) {
	wf := loadWorkflow(t, "bisect.yml")
	wd, ok := wf.On["workflow_dispatch"].(map[string]any)
	if !ok {
		t.Fatal("bisect.yml must be started by hand (workflow_dispatch with inputs)")
	}
	inputs, _ := wd["inputs"].(map[string]any)
	for _, in := range []string{"candidates", "predicate"} {
		if _, ok := inputs[in]; !ok {
			t.Errorf("bisect.yml has no %q input", in)
		}
	}
	var runsBisect, uploads bool
	for _, j := range wf.Jobs {
		for _, s := range j.Steps {
			if strings.Contains(s.Run, "bootlab bisect") {
				runsBisect = true
				// Inputs in ${{ }} inside run: would be pasted into the
				// script unquoted; they travel through env instead.
				if strings.Contains(s.Run, "${{") {
					t.Errorf("bisect step expands expressions inside its script; pass inputs through env")
				}
			}
			if strings.HasPrefix(s.Uses, "actions/upload-artifact@") && s.If == "always()" {
				uploads = true
			}
		}
	}
	if !runsBisect {
		t.Error("bisect.yml never runs bootlab bisect")
	}
	if !uploads {
		t.Error("bisect.yml does not upload its directory with if: always()")
	}
}

func TestCIRunsTheChecksIssue7Lists(t *testing.T) {
	wf := loadWorkflow(t, "ci.yml")
	for _, trig := range []string{"push", "pull_request"} {
		if _, ok := wf.On[trig]; !ok {
			t.Errorf("ci.yml does not run on %s", trig)
		}
	}
	var all strings.Builder
	var cachesImages bool
	for _, j := range wf.Jobs {
		for _, s := range j.Steps {
			all.WriteString(s.Run)
			all.WriteString("\n")
			if strings.HasPrefix(s.Uses, "actions/cache@") && strings.Contains(s.With["path"], ".cache/bootlab") {
				cachesImages = true
			}
			if strings.HasPrefix(s.Uses, "actions/setup-go@") && s.With["cache"] != "true" {
				t.Errorf("setup-go in ci.yml without cache: true re-downloads Go modules every run")
			}
		}
	}
	for _, want := range []string{"gofmt", "go vet", "staticcheck", "go test -race", "make vm", "nix-parse-check.sh", "vendor-hash.sh --check"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("ci.yml never runs %q", want)
		}
	}
	if !cachesImages {
		t.Error("ci.yml does not cache ~/.cache/bootlab (built images)")
	}
}
