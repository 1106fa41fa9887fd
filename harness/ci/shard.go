package ci

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ScenarioTests returns the sorted names of the top-level test functions
// (func TestXxx(t *testing.T)) declared in dir/*_test.go. TestMain and
// helpers with other signatures are not scenarios. A missing dir yields no
// names and no error: the suite may not exist yet.
//
// Scanning source rather than running `go test -list` keeps the answer
// available without building the scenarios package, and lets the package's
// own TestMain use the very same list to implement -shard.
func ScenarioTests(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	seen := map[string]string{}
	var names []string
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("scanning scenarios: %w", err)
		}
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !isTestName(fn.Name.Name) || !takesTestingT(fn) {
				continue
			}
			if prev, dup := seen[fn.Name.Name]; dup {
				return nil, fmt.Errorf("scanning scenarios: %s declared in both %s and %s", fn.Name.Name, prev, f)
			}
			seen[fn.Name.Name] = f
			names = append(names, fn.Name.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// isTestName follows `go test`: "Test" alone, or "Test" followed by a
// character that is not a lower-case letter.
func isTestName(name string) bool {
	if !strings.HasPrefix(name, "Test") || name == "TestMain" {
		return false
	}
	rest := name[len("Test"):]
	return rest == "" || !(rest[0] >= 'a' && rest[0] <= 'z')
}

func takesTestingT(fn *ast.FuncDecl) bool {
	params := fn.Type.Params.List
	if len(params) != 1 || len(params[0].Names) > 1 || fn.Type.Results != nil {
		return false
	}
	star, ok := params[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "testing" && sel.Sel.Name == "T"
}

// ParseShard reads the -shard flag value "i/n": shard i (1-based) of n.
func ParseShard(s string) (i, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("shard %q: want i/n, e.g. 2/4", s)
	}
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	n, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("shard %q: i and n must be integers", s)
	}
	if n < 1 || i < 1 || i > n {
		return 0, 0, fmt.Errorf("shard %q: want 1 <= i <= n", s)
	}
	return i, n, nil
}

// Shard returns the tests that shard i of n runs: names sorted, then dealt
// round-robin (the k-th name, 0-based, goes to shard k%n+1). Dealing rather
// than hashing keeps shards within one test of each other in size; a new
// scenario may move others between shards, which is harmless because no
// shard keeps state.
func Shard(names []string, i, n int) []string {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	var out []string
	for k, name := range sorted {
		if k%n == i-1 {
			out = append(out, name)
		}
	}
	return out
}

// RunPattern is the -test.run expression selecting exactly names (top-level
// tests; subtests follow their parent). An empty list matches nothing, so an
// empty shard runs no test instead of all of them.
func RunPattern(names []string) string {
	if len(names) == 0 {
		return "^$"
	}
	return "^(" + strings.Join(names, "|") + ")$"
}

// dirExists reports whether dir is an existing directory.
func dirExists(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && st.IsDir()
}
