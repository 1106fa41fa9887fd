package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
)

// Files of an injection, under <run>/inject/.
const (
	injectDir      = "inject"
	injectPlan     = "plan.json"
	injectLog      = "pre-nixos.log"
	injectSHA256   = "pre-nixos.sha256"
	injectMissing  = "missing-tools.txt"
	injectedBinary = "/tmp/pre-nixos"
)

// injectPreNixos carries pre-nixos into a running baseline that does not ship it: the
// checkout's static binary goes over the frame channel (sha256 checked in the guest),
// runs with --plan-only, and its plan and logs are kept in the run directory. Nothing is
// applied: the point is to see what pre-nixos would do on that machine.
func injectPreNixos(ctx context.Context, l *lab.Lab, stdout io.Writer) error {
	dir, err := images.PreNixosBinaries(ctx)
	if err != nil {
		return fmt.Errorf("building pre-nixos to inject: %w", err)
	}
	defer os.RemoveAll(dir)
	data, err := os.ReadFile(filepath.Join(dir, "pre-nixos"))
	if err != nil {
		return fmt.Errorf("reading the built pre-nixos: %w", err)
	}
	out := l.Path(injectDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", out, err)
	}
	sum, err := l.Upload(ctx, data, injectedBinary)
	if err != nil {
		return fmt.Errorf("injecting pre-nixos: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, injectSHA256), []byte(sum+"  pre-nixos\n"), 0o644); err != nil {
		return fmt.Errorf("recording the injected binary's sha256: %w", err)
	}
	fmt.Fprintf(stdout, "inject: pre-nixos (%d bytes, sha256 %s) is %s in the guest\n", len(data), sum, injectedBinary)
	// stdout is the plan; the logs go to a file read separately, so neither mixes
	// into the other.
	plan, err := l.Run(ctx, injectedBinary+" --plan-only --output plan 2>/tmp/pre-nixos.log", shell.AllowFail())
	if err != nil {
		return fmt.Errorf("running the injected pre-nixos --plan-only: %w", err)
	}
	logs, err := l.Run(ctx, "cat /tmp/pre-nixos.log", shell.AllowFail())
	if err != nil {
		return fmt.Errorf("reading the injected pre-nixos's log: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, injectLog), logs.Output, 0o644); err != nil {
		return fmt.Errorf("saving pre-nixos's log: %w", err)
	}
	if missing := missingTools(logs.Output); len(missing) > 0 {
		// pre-nixos goes on without some facts (a boot-medium probe) and fails
		// without others; either way the run names what the baseline lacks.
		fmt.Fprintf(stdout, "inject: commands pre-nixos called that the guest does not have: %s\n", strings.Join(missing, ", "))
		if err := os.WriteFile(filepath.Join(out, injectMissing), []byte(strings.Join(missing, "\n")+"\n"), 0o644); err != nil {
			return fmt.Errorf("saving the missing tools: %w", err)
		}
	}
	if plan.ExitStatus != 0 {
		return fmt.Errorf("the injected pre-nixos --plan-only exited %d; its log (%s):\n%s", plan.ExitStatus,
			filepath.Join(out, injectLog), tailLines(string(logs.Output), 15))
	}
	if err := os.WriteFile(filepath.Join(out, injectPlan), plan.Output, 0o644); err != nil {
		return fmt.Errorf("saving the plan: %w", err)
	}
	fmt.Fprintf(stdout, "inject: pre-nixos --plan-only planned; plan: %s\n", filepath.Join(out, injectPlan))
	return nil
}

// notFound is how pre-nixos's command runner logs a command the guest lacks.
var notFound = regexp.MustCompile(`"error":"([^":]+): executable not found"`)

// missingTools lists, once each and in order, the commands pre-nixos's log says the
// guest does not have.
func missingTools(log []byte) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range notFound.FindAllSubmatch(log, -1) {
		if t := string(m[1]); !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
