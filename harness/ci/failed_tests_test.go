package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `make vm` and `make scenarios` show only RUN/PASS/FAIL lines; when a test fails,
// .ci/failed-tests.sh must print that test's own output (the assertion and its logs),
// and not a passing parallel test's, or CI's log names a failure without its reason.
// The log comes from a real `go test -v` of parallel tests so that the interleaving
// headers are the toolchain's own.
func TestFailedTestsScriptPrintsTheFailingTestsOutput(t *testing.T) {
	dir := t.TempDir()
	src := `package p

import (
	"testing"
	"time"
)

func TestGood(t *testing.T) {
	t.Parallel()
	for i := 0; i < 3; i++ {
		t.Logf("good line %d", i)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBad(t *testing.T) {
	t.Parallel()
	for i := 0; i < 3; i++ {
		t.Logf("bad line %d", i)
		time.Sleep(20 * time.Millisecond)
	}
	t.Run("sub", func(t *testing.T) { t.Errorf("the reason it failed") })
}
`
	for name, body := range map[string]string{"go.mod": "module p\n\ngo 1.22\n", "p_test.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-count=1", "-v", "-parallel=2", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	log, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the sample package was meant to fail:\n%s", log)
	}
	logPath := filepath.Join(dir, "test.log")
	if err := os.WriteFile(logPath, log, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", filepath.Join(repoRoot(t), ".ci", "failed-tests.sh"), logPath).CombinedOutput()
	if err != nil {
		t.Fatalf("failed-tests.sh: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{"failed test TestBad/sub", "the reason it failed", "failed test TestBad ", "bad line 2"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s\n--- from the log:\n%s", want, got, log)
		}
	}
	if strings.Contains(got, "good line") || strings.Contains(got, "TestGood") {
		t.Errorf("output carries the passing test's lines:\n%s", got)
	}

	// A log nobody can read is a usage error, not silence.
	err = exec.Command("bash", filepath.Join(repoRoot(t), ".ci", "failed-tests.sh"), filepath.Join(dir, "missing.log")).Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("missing log: %v, want exit status 2", err)
	}
}
