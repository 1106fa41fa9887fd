package vmgate

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// childEnv makes the test binary run only TestVMGateChild, as a real VM test would run
// under go test, so the parent sees the verdict testing itself gives it.
const childEnv = "VMGATE_CHILD"

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(childEnv) != "" {
		_ = flag.Set("test.run", "^TestVMGateChild$")
	} else {
		_ = flag.Set("test.skip", "^TestVMGateChild$")
	}
	os.Exit(m.Run())
}

// TestVMGateChild is a VM test as the gate sees it; "later-skip" makes it skip after the
// gate for another reason, the fault the gate must turn into a failure. It runs only as
// the child process of the tests below (TestMain keeps it out of the package's own run).
func TestVMGateChild(t *testing.T) {
	VM(t)
	if os.Getenv(childEnv) == "later-skip" {
		t.Skip("qemu-system-x86_64 missing")
	}
	t.Log("the VM test ran")
}

func runChild(t *testing.T, mode string, short bool, ci string) (string, error) {
	t.Helper()
	args := []string{"-test.v"}
	if short {
		args = append(args, "-test.short")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "CI="+ci)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestShortSkipsWithOneLineOffCI(t *testing.T) {
	out, err := runChild(t, "plain", true, "")
	require.NoError(t, err, out)
	require.Contains(t, out, "--- SKIP: TestVMGateChild")
	require.Contains(t, out, ShortReason)
	require.NotContains(t, out, "the VM test ran")
	require.Equal(t, 1, strings.Count(out, "-short:"), "one line says why: %s", out)
}

func TestWithoutShortTheVMTestRuns(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		out, err := runChild(t, "plain", false, ci)
		require.NoError(t, err, out)
		require.Contains(t, out, "the VM test ran", "CI=%q", ci)
		require.Contains(t, out, "--- PASS: TestVMGateChild")
	}
}

func TestShortOnCIFails(t *testing.T) {
	out, err := runChild(t, "plain", true, "true")
	require.Error(t, err, out)
	require.Contains(t, out, "--- FAIL: TestVMGateChild")
	require.Contains(t, out, "CI=true with -short")
}

func TestAnySkipOfAVMTestWithoutShortFails(t *testing.T) {
	for _, ci := range []string{"true", ""} {
		out, err := runChild(t, "later-skip", false, ci)
		require.Error(t, err, "CI=%q: %s", ci, out)
		require.Contains(t, out, "--- FAIL: TestVMGateChild")
		require.Contains(t, out, "a VM test skipped without -short")
	}
}
