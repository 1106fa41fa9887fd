package ci

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The part of a GitHub workflow the checks and the runner read.
type workflow struct {
	Name     string            `yaml:"name"`
	On       map[string]any    `yaml:"on"`
	Env      map[string]string `yaml:"env"`
	Jobs     map[string]*job   `yaml:"jobs"`
	Defaults struct {
		Run struct {
			Shell string `yaml:"shell"`
		} `yaml:"run"`
	} `yaml:"defaults"`
	file string // base name, for messages
}

type job struct {
	Needs          any               `yaml:"needs"`
	If             string            `yaml:"if"`
	RunsOn         any               `yaml:"runs-on"`
	Container      any               `yaml:"container"`
	TimeoutMinutes int               `yaml:"timeout-minutes"`
	Env            map[string]string `yaml:"env"`
	Strategy       struct {
		FailFast *bool          `yaml:"fail-fast"`
		Matrix   map[string]any `yaml:"matrix"`
	} `yaml:"strategy"`
	Steps []step `yaml:"steps"`
}

type step struct {
	ID             string            `yaml:"id,omitempty"`
	Name           string            `yaml:"name,omitempty"`
	If             string            `yaml:"if,omitempty"`
	Uses           string            `yaml:"uses,omitempty"`
	Run            string            `yaml:"run,omitempty"`
	Shell          string            `yaml:"shell,omitempty"`
	Dir            string            `yaml:"working-directory"`
	TimeoutMinutes int               `yaml:"timeout-minutes,omitempty"`
	With           map[string]string `yaml:"with,omitempty"`
	Env            map[string]string `yaml:"env,omitempty"`
}

func (s step) label(i int) string {
	if s.Name != "" {
		return fmt.Sprintf("step %d %q", i+1, s.Name)
	}
	if s.Uses != "" {
		return fmt.Sprintf("step %d (%s)", i+1, s.Uses)
	}
	return fmt.Sprintf("step %d", i+1)
}

func parseWorkflow(name string, data []byte) (*workflow, error) {
	var wf workflow
	if err := yaml.Unmarshal(data, &wf); err != nil {
		return nil, fmt.Errorf("%s does not parse as a workflow: %w", name, err)
	}
	if len(wf.Jobs) == 0 {
		return nil, fmt.Errorf("%s has no jobs", name)
	}
	wf.file = name
	return &wf, nil
}

func readWorkflow(path string) (*workflow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading workflow: %w", err)
	}
	return parseWorkflow(filepath.Base(path), data)
}

// jobNames returns the job ids in a stable order.
func (wf *workflow) jobNames() []string {
	var names []string
	for n := range wf.Jobs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// inputDefault is a workflow_dispatch input's default ("" when it has none).
func (wf *workflow) inputDefault(name string) (string, bool) {
	wd, _ := wf.On["workflow_dispatch"].(map[string]any)
	inputs, _ := wd["inputs"].(map[string]any)
	in, ok := inputs[name].(map[string]any)
	if !ok {
		return "", false
	}
	return fmt.Sprint(valueOr(in["default"], "")), true
}

func valueOr(v, def any) any {
	if v == nil {
		return def
	}
	return v
}

// exprCtx is what `${{ }}` expressions see in one job: the first matrix
// combination, dispatch inputs at their defaults, and the runner's paths.
type exprCtx struct {
	wf       *workflow
	matrix   map[string]string
	jobTotal int
	env      map[string]string // workflow, job, step and GITHUB_ENV variables
	steps    map[string]map[string]string
	runner   map[string]string
	github   map[string]string
	inputs   map[string]string // dispatch inputs given to the runner; others take their defaults
	hashRoot string            // set: hashFiles hashes the files under it; unset: a placeholder
}

func newExprCtx(wf *workflow, j *job, runnerTemp, workspace string) *exprCtx {
	c := &exprCtx{wf: wf, matrix: map[string]string{}, jobTotal: 1, env: map[string]string{},
		steps:  map[string]map[string]string{},
		runner: map[string]string{"temp": runnerTemp, "os": "Linux", "arch": "X64"},
		github: map[string]string{"workspace": workspace, "run_id": "1", "ref": "refs/heads/main",
			"event_name": "workflow_dispatch", "sha": "0000000000000000000000000000000000000000"}}
	total := 1
	for axis, v := range j.Strategy.Matrix {
		if l, ok := v.([]any); ok && len(l) > 0 {
			c.matrix[axis] = fmt.Sprint(l[0])
			total *= len(l)
		}
	}
	c.jobTotal = total
	return c
}

var exprRE = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// expand replaces every `${{ expr }}` in s. Only the forms the workflows use
// are understood; anything else is an error, so a workflow stays checkable.
func (c *exprCtx) expand(s string) (string, error) {
	var firstErr error
	out := exprRE.ReplaceAllStringFunc(s, func(m string) string {
		v, err := c.eval(exprRE.FindStringSubmatch(m)[1])
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v
	})
	return out, firstErr
}

var (
	litRE  = regexp.MustCompile(`^'([^']*)'$`)
	hashRE = regexp.MustCompile(`^hashFiles\((.*)\)$`)
)

func (c *exprCtx) eval(e string) (string, error) {
	e = strings.TrimSpace(e)
	if a, b, ok := strings.Cut(e, "||"); ok {
		v, err := c.eval(a)
		if err != nil || v != "" {
			return v, err
		}
		return c.eval(b)
	}
	if m := litRE.FindStringSubmatch(e); m != nil {
		return m[1], nil
	}
	if m := hashRE.FindStringSubmatch(e); m != nil {
		if c.hashRoot == "" {
			return "hash-of-" + strconv.Itoa(len(m[1])), nil
		}
		return hashFiles(c.hashRoot, m[1])
	}
	ns, key, _ := strings.Cut(e, ".")
	switch ns {
	case "matrix":
		if v, ok := c.matrix[key]; ok {
			return v, nil
		}
	case "strategy":
		if key == "job-total" {
			return strconv.Itoa(c.jobTotal), nil
		}
	case "inputs":
		if v, ok := c.inputs[key]; ok {
			return v, nil
		}
		if v, ok := c.wf.inputDefault(key); ok {
			return v, nil
		}
		return "", fmt.Errorf("%s: no workflow_dispatch input %q", c.wf.file, key)
	case "env":
		return c.env[key], nil
	case "steps":
		return c.operand(e)
	case "runner":
		if v, ok := c.runner[key]; ok {
			return v, nil
		}
	case "github":
		if v, ok := c.github[key]; ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s: the workflow runner does not understand the expression ${{ %s }}", c.wf.file, e)
}

// cond evaluates a step's `if:`: "", success(), failure(), always(), and
// `&&` of those with `env.X != ”` and `steps.ID.outputs.NAME != 'V'`.
func (c *exprCtx) cond(e string, failed bool) (bool, error) {
	e = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(e), "${{"), "}}"))
	if e == "" {
		return !failed, nil
	}
	result, sawStatus := true, false
	for _, term := range strings.Split(e, "&&") {
		term = strings.TrimSpace(term)
		switch term {
		case "always()":
			sawStatus = true
		case "success()":
			sawStatus = true
			result = result && !failed
		case "failure()":
			sawStatus = true
			result = result && failed
		default:
			lhs, rhs, eq := strings.Cut(term, "==")
			if !eq {
				var ne bool
				lhs, rhs, ne = strings.Cut(term, "!=")
				if !ne {
					return false, fmt.Errorf("%s: the workflow runner does not understand the condition %q", c.wf.file, e)
				}
			}
			l, err := c.operand(lhs)
			if err != nil {
				return false, err
			}
			r, err := c.operand(rhs)
			if err != nil {
				return false, err
			}
			result = result && ((l == r) == eq)
		}
	}
	if !sawStatus {
		result = result && !failed
	}
	return result, nil
}

func (c *exprCtx) operand(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "steps.") {
		parts := strings.Split(s, ".")
		if len(parts) != 4 || parts[2] != "outputs" {
			return "", fmt.Errorf("%s: the workflow runner does not understand %q", c.wf.file, s)
		}
		return c.steps[parts[1]][parts[3]], nil
	}
	return c.eval(s)
}
