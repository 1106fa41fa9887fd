package ci

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// repoFacts is what workflow command lines are checked against: the real
// Makefile, the flags the bootlab command and test packages define, and the
// scenario names. Gathered from one checkout (the runner's clean clone).
type repoFacts struct {
	root      string
	targets   map[string]bool
	makeVars  map[string]bool
	scenarios []string
	bootlab   string                     // built binary, asked `SUB -h` for its flags
	subs      map[string]bool            // bootlab's commands
	subFlags  map[string]map[string]bool // command -> flag -> takes a value
	pkgFlags  map[string]map[string]bool // package dir -> test binary flag -> takes a value
}

var (
	makeTargetRE = regexp.MustCompile(`(?m)^([A-Za-z0-9_./-]+(?:[ \t]+[A-Za-z0-9_./-]+)*)[ \t]*:([^=]|$)`)
	makeVarDefRE = regexp.MustCompile(`(?m)^(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:\?|:|::|\+)?=`)
	makeVarRefRE = regexp.MustCompile(`\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]`)
)

func gatherFacts(ctx context.Context, root, binDir string) (*repoFacts, error) {
	f := &repoFacts{root: root, targets: map[string]bool{}, makeVars: map[string]bool{},
		subs: map[string]bool{}, subFlags: map[string]map[string]bool{}, pkgFlags: map[string]map[string]bool{}}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		return nil, fmt.Errorf("reading the Makefile: %w", err)
	}
	for _, m := range makeTargetRE.FindAllStringSubmatch(string(mk), -1) {
		for _, t := range strings.Fields(m[1]) {
			if !strings.HasPrefix(t, ".") {
				f.targets[t] = true
			}
		}
	}
	for _, re := range []*regexp.Regexp{makeVarDefRE, makeVarRefRE} {
		for _, m := range re.FindAllStringSubmatch(string(mk), -1) {
			f.makeVars[m[1]] = true
		}
	}
	if f.scenarios, err = ScenarioTests(filepath.Join(root, "scenarios")); err != nil {
		return nil, err
	}
	f.bootlab = filepath.Join(binDir, "bootlab")
	build := exec.CommandContext(ctx, "go", "build", "-o", f.bootlab, "./harness/cmd/bootlab")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building bootlab to read its flags: %w\n%s", err, out)
	}
	out, _ := exec.CommandContext(ctx, f.bootlab, "-h").CombinedOutput()
	inCmds := false
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "commands:"):
			inCmds = true
		case inCmds && strings.HasPrefix(l, "  "):
			f.subs[strings.Fields(l)[0]] = true
		case inCmds:
			inCmds = false
		}
	}
	if len(f.subs) == 0 {
		return nil, fmt.Errorf("bootlab -h lists no commands:\n%s", out)
	}
	return f, nil
}

// helpFlagRE reads a flag from `bootlab SUB -h`: the flag package's
// "  -name TYPE" / "  -name\tusage" lines and the hand-written
// "  --name VALUE     usage" lines.
var helpFlagRE = regexp.MustCompile(`^\s+--?([a-z][a-z0-9-]*)(?:( \S+)?(?:\s{2,}\S.*|\t.*)?)$`)

func (f *repoFacts) bootlabFlags(ctx context.Context, sub string) map[string]bool {
	if fl, ok := f.subFlags[sub]; ok {
		return fl
	}
	out, _ := exec.CommandContext(ctx, f.bootlab, sub, "-h").CombinedOutput()
	fl := map[string]bool{"h": false, "help": false}
	for _, l := range strings.Split(string(out), "\n") {
		if m := helpFlagRE.FindStringSubmatch(l); m != nil {
			fl[m[1]] = fl[m[1]] || m[2] != ""
		}
	}
	f.subFlags[sub] = fl
	return fl
}

// command is one simple command found in a run: script, after expansion.
type command struct {
	args []string
	line int
}

func (c command) String() string { return strings.Join(c.args, " ") }

// commands parses a bash script and returns every simple command in it, in
// pipelines, lists, conditions and command substitutions alike, with
// parameters expanded from env (command substitutions expand to nothing).
func commands(script string, env map[string]string) ([]command, error) {
	file, err := syntax.NewParser().Parse(strings.NewReader(script), "")
	if err != nil {
		return nil, fmt.Errorf("parsing the script: %w", err)
	}
	var pairs []string
	for k, v := range env {
		pairs = append(pairs, k+"="+v)
	}
	cfg := &expand.Config{Env: expand.ListEnviron(pairs...),
		CmdSubst: func(io.Writer, *syntax.CmdSubst) error { return nil }}
	var cmds []command
	var walkErr error
	syntax.Walk(file, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || len(call.Args) == 0 || walkErr != nil {
			return true
		}
		args, err := expand.Fields(cfg, call.Args...)
		if err != nil {
			walkErr = fmt.Errorf("line %d: expanding the command: %w", call.Pos().Line(), err)
			return false
		}
		if len(args) > 0 {
			cmds = append(cmds, command{args: args, line: int(call.Pos().Line())})
		}
		return true
	})
	return cmds, walkErr
}

// expensive says why a command must not run inside `make test` ("" when it
// may): it is a part of make test itself, boots VMs, or changes the host.
func expensive(c command) string {
	a := c.args
	switch {
	case a[0] == "make":
		for _, t := range a[1:] {
			switch t {
			case "vet", "unit", "fuzz", "vm", "scenarios", "test":
				return "make " + t + " is a part of make test already"
			case "lint":
				return "make lint repeats make test's vet and builds staticcheck"
			case "demo", "bench", "soak", "bisect-demo", "sandbox-unit":
				return "make " + t + " boots VMs or repeats unit tests"
			}
		}
	case a[0] == "go" && len(a) > 1 && a[1] == "test":
		return "go test runs test suites"
	case a[0] == "apt-get" || a[0] == "sudo" || a[0] == "apt":
		return a[0] + " changes the host's packages"
	case a[0] == "nix":
		return "nix flake commands need nixpkgs and a Nix with flakes: GitHub only (docs/nix.md)"
	}
	if sub, _, ok := bootlabArgs(a); ok && sub != "report" && sub != "log" && sub != "night" {
		return "bootlab " + sub + " boots VMs"
	}
	return ""
}

// bootlabArgs recognises `bootlab SUB ...`, `.../bootlab SUB ...` and
// `go run [flags] ./harness/cmd/bootlab SUB ...`.
func bootlabArgs(a []string) (sub string, rest []string, ok bool) {
	i := -1
	switch {
	case filepath.Base(a[0]) == "bootlab":
		i = 1
	case a[0] == "go" && len(a) > 2 && a[1] == "run":
		for j := 2; j < len(a); j++ {
			if strings.HasPrefix(a[j], "-") {
				continue
			}
			if strings.TrimSuffix(strings.TrimPrefix(a[j], "./"), "/") == "harness/cmd/bootlab" {
				i = j + 1
			}
			break
		}
	}
	if i < 0 {
		return "", nil, false
	}
	if i >= len(a) {
		return "", nil, true
	}
	return a[i], a[i+1:], true
}

// check returns what is wrong with one command line, or nil.
func (f *repoFacts) check(ctx context.Context, c command) []string {
	a := c.args
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Sprintf("line %d `%s`: ", c.line, c)+fmt.Sprintf(format, args...))
	}
	switch {
	case a[0] == "make":
		for i := 1; i < len(a); i++ {
			x := a[i]
			switch {
			case x == "-C":
				if i+1 >= len(a) || (a[i+1] != "." && a[i+1] != f.root) {
					bad("make -C elsewhere than the checkout")
				}
				i++
			case slices.Contains([]string{"-s", "-k", "-n", "--no-print-directory"}, x) || strings.HasPrefix(x, "-j"):
			case strings.HasPrefix(x, "-"):
				bad("make flag %s is not one the runner knows", x)
			case strings.Contains(x, "="):
				v, _, _ := strings.Cut(x, "=")
				if !f.makeVars[v] {
					bad("the Makefile neither sets nor reads the variable %s", v)
				}
			case !f.targets[x]:
				bad("the Makefile has no target %q", x)
			}
		}
	case a[0] == "go" && len(a) > 1 && a[1] == "test":
		errs = append(errs, f.checkGoTest(ctx, c)...)
	case strings.HasPrefix(a[0], ".ci/") || strings.HasPrefix(a[0], "./.ci/"):
		if st, err := os.Stat(filepath.Join(f.root, a[0])); err != nil || st.Mode()&0o111 == 0 {
			bad("%s is not an executable file in the repository", a[0])
		}
	case (a[0] == "bash" || a[0] == "sh") && len(a) > 1 && strings.Contains(a[1], ".ci/"):
		if _, err := os.Stat(filepath.Join(f.root, a[1])); err != nil {
			bad("%s is not a file in the repository", a[1])
		}
	}
	if sub, rest, ok := bootlabArgs(a); ok {
		if !f.subs[sub] {
			bad("bootlab has no command %q", sub)
			return errs
		}
		fl := f.bootlabFlags(ctx, sub)
		for i := 0; i < len(rest); i++ {
			x := rest[i]
			if x == "--" || !strings.HasPrefix(x, "-") {
				break // the flag package stops at the first argument
			}
			name, val, hasVal := strings.Cut(strings.TrimLeft(x, "-"), "=")
			takes, known := fl[name]
			if !known {
				bad("bootlab %s has no flag -%s", sub, name)
				continue
			}
			if takes && !hasVal && i+1 < len(rest) {
				i++
				val = rest[i]
			}
			if name == "scenario" && !slices.Contains(f.scenarios, val) {
				bad("no scenario %q in scenarios/ (have %s)", val, strings.Join(f.scenarios, ", "))
			}
		}
	}
	return errs
}

// goTestFlags are go test's own flags (true: takes a value).
var goTestFlags = map[string]bool{
	"run": true, "skip": true, "count": true, "timeout": true, "bench": true, "benchtime": true,
	"fuzz": true, "fuzztime": true, "p": true, "parallel": true, "vet": true, "tags": true,
	"shuffle": true, "list": true, "cpu": true, "o": true, "exec": true, "mod": true,
	"coverprofile": true, "covermode": true, "coverpkg": true, "ldflags": true, "gcflags": true,
	"v": false, "race": false, "cover": false, "benchmem": false, "short": false, "failfast": false,
	"json": false, "c": false, "x": false, "trimpath": false, "fullpath": false,
}

var testNameRE = regexp.MustCompile(`Test[A-Za-z0-9_]*`)

func (f *repoFacts) checkGoTest(ctx context.Context, c command) []string {
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Sprintf("line %d `%s`: ", c.line, c)+fmt.Sprintf(format, args...))
	}
	a := c.args[2:]
	// Packages first: every argument that is not a flag or a go test flag's value.
	var pkgs []string
	for i := 0; i < len(a); i++ {
		if a[i] == "-args" {
			break
		}
		if strings.HasPrefix(a[i], "-") {
			name, _, hasVal := strings.Cut(strings.TrimLeft(a[i], "-"), "=")
			if goTestFlags[name] && !hasVal {
				i++
			}
			continue
		}
		if strings.HasPrefix(a[i], ".") || strings.HasPrefix(a[i], "github.com/") {
			pkgs = append(pkgs, a[i])
		}
	}
	if len(pkgs) == 0 {
		pkgs = []string{"."}
	}
	list := exec.CommandContext(ctx, "go", append([]string{"list", "-f", "{{.Dir}}"}, pkgs...)...)
	list.Dir = f.root
	var stderr bytes.Buffer
	list.Stderr = &stderr
	out, err := list.Output()
	if err != nil {
		bad("go list %s: %v: %s", strings.Join(pkgs, " "), err, strings.TrimSpace(stderr.String()))
		return errs
	}
	dirs := strings.Fields(string(out))
	own := map[string]bool{}
	for _, d := range dirs {
		for k, v := range f.packageFlags(d) {
			own[k] = own[k] || v
		}
	}
	for i := 0; i < len(a); i++ {
		x := a[i]
		if x == "-args" || !strings.HasPrefix(x, "-") {
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(x, "-"), "=")
		name = strings.TrimPrefix(name, "test.")
		takes, isGo := goTestFlags[name]
		if !isGo {
			var known bool
			if takes, known = own[name]; !known {
				bad("neither go test nor %s defines the flag -%s", strings.Join(pkgs, " "), name)
				continue
			}
		}
		if takes && !hasVal && i+1 < len(a) {
			i++
			val = a[i]
		}
		if name == "run" {
			for _, want := range testNameRE.FindAllString(val, -1) {
				if !f.testExists(dirs, want) {
					bad("-run names %s, which no package here declares", want)
				}
			}
		}
	}
	return errs
}

func (f *repoFacts) testExists(dirs []string, name string) bool {
	for _, d := range dirs {
		if names, err := ScenarioTests(d); err == nil && slices.Contains(names, name) {
			return true
		}
	}
	return false
}

var flagFuncs = map[string]bool{"String": true, "Int": true, "Int64": true, "Uint": true, "Uint64": true,
	"Float64": true, "Duration": true, "StringVar": true, "IntVar": true, "Int64Var": true, "UintVar": true,
	"Uint64Var": true, "Float64Var": true, "DurationVar": true, "Var": true, "Func": true, "TextVar": true,
	"Bool": false, "BoolVar": false, "BoolFunc": false}

// packageFlags finds the flags a package's test binary defines with the
// flag package's top-level functions (true: the flag takes a value).
func (f *repoFacts) packageFlags(dir string) map[string]bool {
	if fl, ok := f.pkgFlags[dir]; ok {
		return fl
	}
	fl := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	fset := token.NewFileSet()
	for _, file := range files {
		af, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			continue
		}
		// A package that boots through labtest takes labtest's flags (-boot-image-debug,
		// -shard, ...): they are registered by the import.
		for _, imp := range af.Imports {
			if lt := filepath.Join(f.root, "harness", "labtest"); imp.Path.Value == `"github.com/bootlab/bootlab/harness/labtest"` && dir != lt {
				for k, v := range f.packageFlags(lt) {
					fl[k] = v
				}
			}
		}
		ast.Inspect(af, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "flag" {
				return true
			}
			takes, isDef := flagFuncs[sel.Sel.Name]
			if !isDef {
				return true
			}
			for _, arg := range call.Args {
				if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if name, err := strconv.Unquote(lit.Value); err == nil {
						fl[name] = takes
					}
					break
				}
			}
			return true
		})
	}
	f.pkgFlags[dir] = fl
	return fl
}

// checkJob checks every command line of every run: step in a job against
// the repository, with ${{ }} expressions and the job's env expanded.
func (f *repoFacts) checkJob(ctx context.Context, wf *workflow, name string, runnerTemp string) []string {
	j := wf.Jobs[name]
	ec := newExprCtx(wf, j, runnerTemp, f.root)
	env := map[string]string{"RUNNER_TEMP": runnerTemp, "GITHUB_WORKSPACE": f.root, "HOME": runnerTemp}
	var errs []string
	for _, layer := range []map[string]string{wf.Env, j.Env} {
		for k, v := range layer {
			x, err := ec.expand(v)
			if err != nil {
				errs = append(errs, err.Error())
			}
			env[k] = x
			ec.env[k] = x
		}
	}
	for i, s := range j.Steps {
		if s.Run == "" {
			continue
		}
		senv := maps(env, nil)
		for k, v := range s.Env {
			x, err := ec.expand(v)
			if err != nil {
				errs = append(errs, err.Error())
			}
			senv[k] = x
		}
		script, err := ec.expand(s.Run)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s job %s %s: %v", wf.file, name, s.label(i), err))
			continue
		}
		cmds, err := commands(script, senv)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s job %s %s: %v", wf.file, name, s.label(i), err))
			continue
		}
		for _, c := range cmds {
			for _, e := range f.check(ctx, c) {
				errs = append(errs, fmt.Sprintf("%s job %s %s: %s", wf.file, name, s.label(i), e))
			}
		}
	}
	return errs
}

// jobCost returns why a job must not run in make test, "" when it may.
func jobCost(wf *workflow, name string) string {
	j := wf.Jobs[name]
	ec := newExprCtx(wf, j, os.TempDir(), ".")
	for _, s := range j.Steps {
		script, err := ec.expand(s.Run)
		if err != nil {
			return err.Error()
		}
		cmds, err := commands(script, nil)
		if err != nil {
			return err.Error()
		}
		for _, c := range cmds {
			if why := expensive(c); why != "" {
				return why
			}
		}
	}
	return ""
}
