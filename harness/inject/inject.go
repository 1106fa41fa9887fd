// Package inject carries pre-nixos into a running baseline that does not ship it (an
// upstream installer, a rescue image), runs it there in --plan-only mode and checks what
// it planned against the disks the guest's own /sys reports. Nothing is applied: the
// point is to see what pre-nixos would do on that machine, with that kernel and those
// tools. `bootlab run --inject pre-nixos` and the scenarios share this code so both prove
// the same things the same way.
package inject

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/provisioner/inventory"
)

// Files of an injection, in Options.Dir.
const (
	PlanFile    = "plan.json"
	LogFile     = "pre-nixos.log"
	SHA256File  = "pre-nixos.sha256"
	MissingFile = "missing-tools.txt"
)

// DefaultPath is where the binary goes in the guest: /tmp is writable in every baseline
// seen so far (tmpfs or the initramfs itself).
const DefaultPath = "/tmp/pre-nixos"

// Runner is the guest shell: *shell.Shell satisfies it.
type Runner interface {
	Run(ctx context.Context, cmd string, opts ...shell.RunOption) (shell.Result, error)
	Upload(ctx context.Context, data []byte, path string) (string, error)
}

// Options says what to inject and where to keep the results.
type Options struct {
	Binary []byte // the static pre-nixos
	Path   string // in the guest; DefaultPath when empty
	// Dir on the host receives plan.json, pre-nixos.log, pre-nixos.sha256 and
	// missing-tools.txt; empty keeps nothing on disk.
	Dir string
	// Timeout bounds each guest command (default 2 min; the upload is bounded by ctx).
	Timeout time.Duration
}

// Result is what the injected pre-nixos did.
type Result struct {
	SHA256 string // of the binary, checked in the guest
	Plan   []byte // pre-nixos --plan-only's stdout: the plan JSON
	Log    []byte // its stderr (structured log lines and its own messages)
	// Missing are the commands pre-nixos called that the guest does not have, once
	// each, in the order it called them.
	Missing []string
	// Inventory is the disk inventory pre-nixos planned from (its
	// pre_nixos.inventory.scanned event), and RAMGiB the memory it saw.
	Inventory []inventory.Disk
	RAMGiB    int
}

// MissingToolsError is a run of pre-nixos that did not plan and whose log names
// commands the guest lacks: the run says which, rather than a plan from partial facts
// or a bare exit status.
type MissingToolsError struct {
	Tools   []string
	Status  int
	LogTail string
}

func (e *MissingToolsError) Error() string {
	return fmt.Sprintf("pre-nixos --plan-only exited %d without a plan: the guest lacks %s; its log ends:\n%s",
		e.Status, strings.Join(e.Tools, ", "), e.LogTail)
}

// Inject uploads o.Binary (sha256 checked in the guest), runs it with --plan-only and
// returns the plan, the log and the tools it missed. A run that exits non-zero is an
// error; when its log names missing commands the error is a *MissingToolsError. The
// result is returned, as far as it got, with the error.
func Inject(ctx context.Context, r Runner, o Options) (*Result, error) {
	if len(o.Binary) == 0 {
		return nil, errors.New("injecting pre-nixos: no binary given")
	}
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", o.Dir, err)
		}
	}
	res := &Result{}
	sum, err := r.Upload(ctx, o.Binary, o.Path)
	if err != nil {
		return nil, fmt.Errorf("injecting pre-nixos: %w", err)
	}
	res.SHA256 = sum
	if err := save(o.Dir, SHA256File, []byte(sum+"  pre-nixos\n")); err != nil {
		return res, err
	}
	// stdout is the plan; the log goes to a file read separately, so neither mixes into
	// the other (the shell merges a command's stdout and stderr).
	logPath := o.Path + ".log"
	plan, err := r.Run(ctx, fmt.Sprintf("%s --plan-only --output plan 2>%s", o.Path, logPath), shell.AllowFail(), shell.Timeout(o.Timeout))
	if err != nil {
		return res, fmt.Errorf("running the injected pre-nixos --plan-only: %w", err)
	}
	logs, err := r.Run(ctx, "cat "+logPath, shell.AllowFail(), shell.Timeout(o.Timeout))
	if err != nil {
		return res, fmt.Errorf("reading the injected pre-nixos's log: %w", err)
	}
	res.Log = logs.Output
	res.Missing = MissingTools(logs.Output)
	res.Inventory, res.RAMGiB = scanned(logs.Output)
	if err := save(o.Dir, LogFile, logs.Output); err != nil {
		return res, err
	}
	if len(res.Missing) > 0 {
		if err := save(o.Dir, MissingFile, []byte(strings.Join(res.Missing, "\n")+"\n")); err != nil {
			return res, err
		}
	}
	if plan.ExitStatus != 0 {
		tail := tailLines(string(logs.Output), 15)
		if len(res.Missing) > 0 {
			return res, &MissingToolsError{Tools: res.Missing, Status: plan.ExitStatus, LogTail: tail}
		}
		return res, fmt.Errorf("the injected pre-nixos --plan-only exited %d; its log ends:\n%s", plan.ExitStatus, tail)
	}
	var js map[string]any
	if err := json.Unmarshal(plan.Output, &js); err != nil {
		return res, fmt.Errorf("pre-nixos --plan-only printed no JSON plan (%v): %q", err, truncate(plan.Output, 300))
	}
	res.Plan = plan.Output
	if err := save(o.Dir, PlanFile, plan.Output); err != nil {
		return res, err
	}
	return res, nil
}

func save(dir, name string, data []byte) error {
	if dir == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		return fmt.Errorf("saving %s of the injection: %w", name, err)
	}
	return nil
}

// notFound is how pre-nixos's command runner logs a command the guest lacks.
var notFound = regexp.MustCompile(`"error":"([^":]+): executable not found"`)

// MissingTools lists, once each and in order, the commands pre-nixos's log says the
// guest does not have.
func MissingTools(log []byte) []string {
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

// scanned reads the inventory pre-nixos planned from out of its log.
func scanned(log []byte) ([]inventory.Disk, int) {
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Event  string           `json:"event"`
			Disks  []inventory.Disk `json:"disks"`
			RAMGiB int              `json:"ram_gib"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "pre_nixos.inventory.scanned" {
			return ev.Disks, ev.RAMGiB
		}
	}
	return nil, 0
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// PreNixos builds the checkout's static pre-nixos (images.Cache.PreNixosBinaries, the
// Go build cache kept in cache) and returns the binary to inject; the build directory
// goes.
func PreNixos(ctx context.Context, cache images.Cache) ([]byte, error) {
	dir, err := cache.PreNixosBinaries(ctx)
	if err != nil {
		return nil, fmt.Errorf("building pre-nixos to inject: %w", err)
	}
	defer os.RemoveAll(dir)
	data, err := os.ReadFile(filepath.Join(dir, "pre-nixos"))
	if err != nil {
		return nil, fmt.Errorf("reading the built pre-nixos: %w", err)
	}
	return data, nil
}
