package ci

import (
	"crypto/sha256"
	"encoding/hex"

	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Job is one job of one workflow with one combination of its matrix: what
// GitHub starts one runner for.
type Job struct {
	wf     *workflow
	ID     string            // the job's key under jobs:
	Matrix map[string]string // axis -> value; empty without a matrix
	Total  int               // strategy.job-total
}

// Workflow is the workflow's file name without .yml ("ci", "nightly").
func (j Job) Workflow() string { return strings.TrimSuffix(j.wf.file, ".yml") }

// Name is how the runner and its log call the job: "ci/unit",
// "nightly/scenarios shard=1".
func (j Job) Name() string {
	s := j.Workflow() + "/" + j.ID
	for _, k := range j.axes() {
		s += " " + k + "=" + j.Matrix[k]
	}
	return s
}

func (j Job) axes() []string {
	var axes []string
	for k := range j.Matrix {
		axes = append(axes, k)
	}
	slices.Sort(axes)
	return axes
}

// slug names the job's directories and container.
func (j Job) slug() string {
	s := j.Workflow() + "-" + j.ID
	for _, k := range j.axes() {
		s += "-" + k + "-" + j.Matrix[k]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// Matches reports whether a selector names the job: "ci/unit",
// "nightly/scenarios" (every shard) or "nightly/scenarios:shard=1".
func (j Job) Matches(sel string) bool {
	name, combo, _ := strings.Cut(sel, ":")
	if name != j.Workflow()+"/"+j.ID {
		return false
	}
	if combo == "" {
		return true
	}
	for _, kv := range strings.Split(combo, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if got, ok := j.Matrix[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Definition is the job as the workflow writes it.
func (j Job) definition() *job { return j.wf.Jobs[j.ID] }

// LoadWorkflows parses every workflow under root/.github/workflows, sorted
// by file name.
func LoadWorkflows(root string) ([]*workflow, error) {
	files, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no workflows under %s/.github/workflows", root)
	}
	slices.Sort(files)
	var wfs []*workflow
	for _, f := range files {
		wf, err := readWorkflow(f)
		if err != nil {
			return nil, err
		}
		wfs = append(wfs, wf)
	}
	return wfs, nil
}

// ExpandJobs lists every job of the workflows with its matrix expanded (the
// product of the axes, in the order the lists give), each after the jobs it
// needs.
func ExpandJobs(wfs []*workflow) ([]Job, error) {
	var out []Job
	for _, wf := range wfs {
		order, err := wf.jobOrder()
		if err != nil {
			return nil, err
		}
		for _, id := range order {
			combos, err := matrixCombos(wf.Jobs[id].Strategy.Matrix)
			if err != nil {
				return nil, fmt.Errorf("%s job %s: %w", wf.file, id, err)
			}
			for _, m := range combos {
				out = append(out, Job{wf: wf, ID: id, Matrix: m, Total: len(combos)})
			}
		}
	}
	return out, nil
}

// needs returns the ids a job needs.
func (j *job) needs() []string {
	switch n := j.Needs.(type) {
	case string:
		return []string{n}
	case []any:
		var out []string
		for _, x := range n {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

// jobOrder sorts the job ids so that every job comes after what it needs
// (by name among equals).
func (wf *workflow) jobOrder() ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(id string) error
	visit = func(id string) error {
		j, ok := wf.Jobs[id]
		if !ok {
			return fmt.Errorf("%s: a job needs %q, which does not exist", wf.file, id)
		}
		switch state[id] {
		case 1:
			return fmt.Errorf("%s: job %s needs itself through a cycle", wf.file, id)
		case 2:
			return nil
		}
		state[id] = 1
		for _, n := range j.needs() {
			if err := visit(n); err != nil {
				return err
			}
		}
		state[id] = 2
		order = append(order, id)
		return nil
	}
	for _, id := range wf.jobNames() {
		if err := visit(id); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// matrixCombos expands a matrix of list axes into its combinations, the
// first axis (by name) varying slowest. include/exclude are refused: no
// workflow here uses them and a silent misreading would run the wrong jobs.
func matrixCombos(m map[string]any) ([]map[string]string, error) {
	combos := []map[string]string{{}}
	var axes []string
	for k := range m {
		axes = append(axes, k)
	}
	slices.Sort(axes)
	for _, axis := range axes {
		if axis == "include" || axis == "exclude" {
			return nil, fmt.Errorf("the workflow runner does not expand matrix %s", axis)
		}
		vals, ok := m[axis].([]any)
		if !ok || len(vals) == 0 {
			return nil, fmt.Errorf("matrix axis %s is not a non-empty list", axis)
		}
		var next []map[string]string
		for _, c := range combos {
			for _, v := range vals {
				n := maps(c, map[string]string{axis: fmt.Sprint(v)})
				next = append(next, n)
			}
		}
		combos = next
	}
	return combos, nil
}

// maps returns a copy of a with b laid over it.
func maps(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// hashFiles is GitHub's hashFiles(patterns...): the sha256 of the sha256 of
// every file under root matching one of the patterns, in path order; ""
// when none matches.
func hashFiles(root, args string) (string, error) {
	var pats []string
	for _, a := range strings.Split(args, ",") {
		a = strings.TrimSpace(a)
		if len(a) < 2 || a[0] != '\'' || a[len(a)-1] != '\'' {
			return "", fmt.Errorf("hashFiles takes quoted patterns, got %s", a)
		}
		pats = append(pats, a[1:len(a)-1])
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		for _, pat := range pats {
			if globMatch(pat, filepath.ToSlash(rel)) {
				files = append(files, p)
				break
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hashFiles in %s: %w", root, err)
	}
	if len(files) == 0 {
		return "", nil
	}
	slices.Sort(files)
	all := sha256.New()
	for _, f := range files {
		h := sha256.New()
		fh, err := os.Open(f)
		if err != nil {
			return "", fmt.Errorf("hashFiles: %w", err)
		}
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", fmt.Errorf("hashFiles: reading %s: %w", f, err)
		}
		all.Write(h.Sum(nil))
	}
	return hex.EncodeToString(all.Sum(nil)), nil
}

// globMatch matches a slash path against a glob where ** spans directories.
func globMatch(pat, p string) bool {
	if pat == "**" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pat, "/**"); ok {
		return p == prefix || strings.HasPrefix(p, prefix+"/") || (strings.ContainsAny(prefix, "*?[") && globMatchDirs(prefix, p))
	}
	if rest, ok := strings.CutPrefix(pat, "**/"); ok {
		parts := strings.Split(p, "/")
		for i := range parts {
			if globMatch(rest, strings.Join(parts[i:], "/")) {
				return true
			}
		}
		return false
	}
	if before, after, ok := strings.Cut(pat, "/**/"); ok {
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			if globMatch(before, strings.Join(parts[:i], "/")) && globMatch("**/"+after, strings.Join(parts[i:], "/")) {
				return true
			}
		}
		return false
	}
	ok, _ := path.Match(pat, p)
	return ok
}

func globMatchDirs(prefix, p string) bool {
	parts := strings.Split(p, "/")
	for i := 1; i <= len(parts); i++ {
		if ok, _ := path.Match(prefix, strings.Join(parts[:i], "/")); ok {
			return true
		}
	}
	return false
}

// Container is the image the job runs in, "" for a job on the runner itself.
func (j Job) Container() string {
	image, _ := containerOf(j.definition())
	return image
}
