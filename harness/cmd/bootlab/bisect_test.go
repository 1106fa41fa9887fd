package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/bisect"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

// TestBisectUsageAndSkips drives `bootlab bisect` without booting: the one FlagSet
// holds bisect's flags and the VM flags, VM flag errors are usage errors, and a list
// whose images are all missing ends with the endpoints unverifiable (every probe a
// skip), not with a regression.
func TestBisectUsageAndSkips(t *testing.T) {
	vmgate.VM(t)
	run := func(args ...string) (int, string, string) {
		var out, errb strings.Builder
		code := Main(append([]string{"bisect"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, _, errs := run("--profile", "nope", "--run", "true", "a.iso")
	require.Equal(t, bisect.ExitUsage, code)
	require.Contains(t, errs, "unknown image profile")
	code, _, errs = run("--accel", "hvf", "--run", "true", "a.iso")
	require.Equal(t, bisect.ExitUsage, code)
	require.Contains(t, errs, "--accel must be kvm or tcg")
	code, _, errs = run("--timeout-scale", "0", "--run", "true", "a.iso")
	require.Equal(t, bisect.ExitUsage, code)
	require.Contains(t, errs, "--timeout-scale must be positive")

	tmp := t.TempDir()
	dir := filepath.Join(tmp, "b")
	code, out, errs := run("--accel", "tcg", "-q", "--run", "true", "--dir", dir,
		"old kernel="+filepath.Join(tmp, "missing-1"), "new kernel="+filepath.Join(tmp, "missing-2"))
	require.Equal(t, bisect.ExitEndpoints, code, "stdout:\n%s\nstderr:\n%s", out, errs)
	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	require.NoError(t, err)
	var res bisect.Result
	require.NoError(t, json.Unmarshal(b, &res))
	require.NotEmpty(t, res.Probes)
	for _, pr := range res.Probes {
		require.Equal(t, bisect.Skip, pr.Verdict, pr.Reason)
		require.Contains(t, pr.Reason, "image file missing")
	}

	// --json prints that result.json on stdout, and only it; the exit status is the same.
	dir = filepath.Join(tmp, "j")
	code, out, errs = run("--json", "--accel", "tcg", "-q", "--run", "true", "--dir", dir,
		"old kernel="+filepath.Join(tmp, "missing-1"), "new kernel="+filepath.Join(tmp, "missing-2"))
	require.Equal(t, bisect.ExitEndpoints, code, "stderr:\n%s", errs)
	b, err = os.ReadFile(filepath.Join(dir, bisect.ResultFile))
	require.NoError(t, err)
	require.JSONEq(t, string(b), out)
	var fields map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &fields))
	for _, k := range []string{"status", "dir", "candidates", "verdicts", "first_bad", "last_good", "suspects", "probes", "message"} {
		require.Contains(t, fields, k, "docs/bisect.md's --json fields")
	}
}

// `bootlab bisect demo` takes --isos (the installer ISO series) and nothing else: any
// other argument is a usage error before anything is built or booted.
func TestBisectDemoArguments(t *testing.T) {
	var out, errb strings.Builder
	code := Main([]string{"bisect", "demo", "--kernels"}, &out, &errb)
	require.Equal(t, exitUsage, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Contains(t, errb.String(), `takes no argument but --isos`)
	require.Empty(t, out.String(), "nothing built")
}
