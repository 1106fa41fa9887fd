package main

import (
	"os/exec"
	"strings"
	"testing"
)

// goListDeps is every package the bootlab binary links, standard library included.
func goListDeps(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	return strings.Fields(string(out))
}

// The bootlab binary does not link the test framework: configuration is read at the
// edge (config.FromEnv in Main), not chosen by asking testing.Testing() whether this
// is a test binary, and no package the command imports is a test helper.
func TestBinaryLinksNoTestFramework(t *testing.T) {
	for _, p := range goListDeps(t) {
		if p == "testing" || strings.HasSuffix(p, "/harness/labtest") || strings.Contains(p, "stretchr/testify") {
			t.Errorf("the bootlab binary links %s", p)
		}
	}
}
