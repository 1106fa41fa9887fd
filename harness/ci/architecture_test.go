package ci

import (
	"bufio"
	"bytes"
	"fmt"

	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/bootlab/bootlab"

// goListEdges is every import inside the module, package -> packages, from `go list`
// (non-test imports; paths relative to the module root).
func goListEdges(t *testing.T, root string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	edges := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], modulePath+"/")
		if pkg == modulePath {
			pkg = "."
		}
		var deps []string
		for _, imp := range f[1:] {
			if rel, ok := strings.CutPrefix(imp, modulePath+"/"); ok {
				deps = append(deps, rel)
			}
		}
		slices.Sort(deps)
		edges[pkg] = deps
	}
	return edges
}

// docEdges reads the ```imports block of docs/architecture.md: one "pkg -> a, b" line
// per package ("pkg ->" for none).
func docEdges(t *testing.T, root string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	edges := map[string][]string{}
	in, found := false, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "```imports":
			in, found = true, true
			continue
		case in && line == "```":
			in = false
			continue
		case !in || line == "":
			continue
		}
		pkg, deps, ok := strings.Cut(line, "->")
		if !ok {
			t.Fatalf("docs/architecture.md imports block: %q is not \"pkg -> a, b\"", line)
		}
		var list []string
		for _, d := range strings.Split(deps, ",") {
			if d = strings.TrimSpace(d); d != "" {
				list = append(list, d)
			}
		}
		slices.Sort(list)
		edges[strings.TrimSpace(pkg)] = list
	}
	if !found {
		t.Fatal("docs/architecture.md has no ```imports block")
	}
	return edges
}

func formatEdges(edges map[string][]string) string {
	pkgs := make([]string, 0, len(edges))
	for p := range edges {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	var b strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&b, "%s -> %s\n", p, strings.Join(edges[p], ", "))
	}
	return b.String()
}

// TestArchitectureDocMatchesImports keeps docs/architecture.md's import list equal to
// what the code imports, so the picture cannot drift: a new or removed import fails here
// with the block to paste.
func TestArchitectureDocMatchesImports(t *testing.T) {
	root := repoRoot(t)
	got, want := formatEdges(goListEdges(t, root)), formatEdges(docEdges(t, root))
	if got != want {
		t.Fatalf("docs/architecture.md's imports block differs from go list; the code's edges are:\n```imports\n%s```", got)
	}
}

// TestArchitectureLayers checks the arrows docs/architecture.md fixes: scenarios ->
// harness -> artifacts, never back; the provisioner imports none of them. From outside, only the
// provisioner's pure data packages may be imported (sharedProvisioner): the status-file
// parser for the checks, and the inventory and planner harness/inject needs to recompute
// the plan an injected pre-nixos should have made. They import only each other, so the
// harness never pulls in code that touches disks (docs/decisions.md).
func TestArchitectureLayers(t *testing.T) {
	edges := goListEdges(t, repoRoot(t))
	layer := func(p string) string { return strings.SplitN(p, "/", 2)[0] }
	rank := map[string]int{"artifacts": 0, "harness": 1, "scenarios": 2}
	for pkg, deps := range edges {
		for _, d := range deps {
			from, to := layer(pkg), layer(d)
			switch {
			case from == "provisioner" && to != "provisioner":
				t.Errorf("%s imports %s: the provisioner imports none of bootlab's packages", pkg, d)
			case to == "provisioner" && from != "provisioner" && !sharedProvisioner[d]:
				t.Errorf("%s imports %s: only the provisioner's pure data packages %v may be imported from outside", pkg, d, sharedNames())
			case to != "provisioner" && from != "provisioner" && rank[to] > rank[from]:
				t.Errorf("%s imports %s: arrows run scenarios -> harness -> artifacts", pkg, d)
			}
		}
	}
	for p := range sharedProvisioner {
		for _, d := range edges[p] {
			if !sharedProvisioner[d] {
				t.Errorf("%s imports %s: it is shared with the harness and may import only %v", p, d, sharedNames())
			}
		}
	}
}

// sharedProvisioner are the provisioner packages the harness may import: data and pure
// functions, nothing that runs a command.
var sharedProvisioner = map[string]bool{
	"provisioner/status":    true,
	"provisioner/inventory": true,
	"provisioner/planner":   true,
}

func sharedNames() []string {
	var out []string
	for p := range sharedProvisioner {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// The door into a VM (docs/architecture.md, "The door"): the VM's insides - harness/vm,
// harness/qemu, harness/console - are imported only by harness/lab and the layer
// beneath it; everything above boots and drives a VM through lab.
var (
	vmInsides = []string{"harness/vm", "harness/qemu", "harness/console"}
	vmLayer   = map[string]bool{
		"harness/lab": true, "harness/vm": true, "harness/qemu": true, "harness/console": true,
		"harness/shell": true, "harness/frame": true, "harness/fakeguest": true, "harness/replay": true,
	}
	// doorOnly are the packages that see nothing but the door: not the VM's insides,
	// not the shell, not the screen model, in their tests either.
	doorOnly    = []string{"harness/cmd/bootlab", "scenarios"}
	doorForbids = []string{"harness/vm", "harness/qemu", "harness/console", "harness/shell", "harness/screen"}
)

// goListAllImports is pkg's imports, its tests' included, inside the module.
func goListAllImports(t *testing.T, root, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "./"+pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	var deps []string
	for _, imp := range strings.Fields(string(out)) {
		if rel, ok := strings.CutPrefix(imp, modulePath+"/"); ok {
			deps = append(deps, rel)
		}
	}
	return deps
}

// TestDoorIntoAVM fails when a package outside the VM layer imports vm, qemu or console,
// or when the bootlab command or the scenarios (tests included) import any of vm, qemu,
// console, shell or screen: what they need is a lab method named for what it does.
func TestDoorIntoAVM(t *testing.T) {
	root := repoRoot(t)
	for pkg, deps := range goListEdges(t, root) {
		for _, d := range deps {
			if slices.Contains(vmInsides, d) && !vmLayer[pkg] {
				t.Errorf("%s imports %s: only harness/lab and the layer beneath it may; go through lab", pkg, d)
			}
		}
	}
	for _, pkg := range doorOnly {
		for _, d := range goListAllImports(t, root, pkg) {
			if slices.Contains(doorForbids, d) {
				t.Errorf("%s imports %s: it sees a VM only through harness/lab", pkg, d)
			}
		}
	}
}
