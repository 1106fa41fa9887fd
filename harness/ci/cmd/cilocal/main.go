// Command cilocal runs the GitHub workflows of a bootlab checkout on this
// machine, as written (docs/ci.md): container jobs in a real debian:12
// container (podman), the others here, matrix expanded, every uses: step
// done by a local stand-in. `make ci-local` runs it; `make ci-local
// JOB=ci/unit` runs one job.
//
//	cilocal [-job WF/JOB[:AXIS=V]]... [-input NAME=VALUE]... [-head] [-state DIR] [-cache DIR] [-list]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bootlab/bootlab/harness/ci"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	os.Exit(run())
}

func run() int {
	var jobs, inputs multi
	fs := flag.NewFlagSet("cilocal", flag.ContinueOnError)
	fs.Var(&jobs, "job", "run this job: WF/JOB (every matrix combination) or WF/JOB:AXIS=V; repeatable; default: every job")
	fs.Var(&inputs, "input", "a workflow_dispatch input, NAME=VALUE; repeatable")
	head := fs.Bool("head", false, "check out HEAD instead of the working tree (tracked and new files, uncommitted changes included)")
	home, _ := os.UserCacheDir()
	state := fs.String("state", filepath.Join(home, "bootlab-ci"), "persistent state: work directories, caches, Go caches, snapshots")
	repo := fs.String("repo", ".", "the repository whose workflows run")
	cache := fs.String("cache", "", "the Actions cache stand-in's store (default STATE/cache)")
	list := fs.Bool("list", false, "list the jobs and exit")
	vmLock := fs.String("vm-lock", "/tmp/bootlab-vm.lock", "held while a job that boots VMs runs (\"\" for none)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cilocal: unexpected arguments %q\n", fs.Args())
		return 2
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cilocal:", err)
		return 2
	}
	wfs, err := ci.LoadWorkflows(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cilocal:", err)
		return 2
	}
	all, err := ci.ExpandJobs(wfs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cilocal:", err)
		return 2
	}
	in := map[string]string{}
	for _, kv := range inputs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(os.Stderr, "cilocal: -input %q: want NAME=VALUE\n", kv)
			return 2
		}
		in[k] = v
	}
	var selected []ci.Job
	for _, sel := range jobs {
		n := 0
		for _, j := range all {
			if j.Matches(sel) {
				n++
			}
		}
		if n == 0 {
			fmt.Fprintf(os.Stderr, "cilocal: -job %q names no job; the jobs are:\n", sel)
			for _, j := range all {
				fmt.Fprintf(os.Stderr, "  %s\n", j.Name())
			}
			return 2
		}
	}
	for _, j := range all {
		take := len(jobs) == 0
		for _, sel := range jobs {
			take = take || j.Matches(sel)
		}
		if take {
			selected = append(selected, j)
		}
	}
	if *list {
		for _, j := range selected {
			fmt.Println(j.Name())
		}
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	stamp := time.Now().UTC().Format("20060102T150405Z")
	r := &ci.Runner{Repo: root, HeadOnly: *head, State: *state, Cache: *cache, Inputs: in, Out: os.Stdout, VMLock: *vmLock,
		Artifacts: filepath.Join(*state, "runs", stamp, "artifacts")}
	if err := os.MkdirAll(r.Artifacts, 0o755); err != nil {
		logger.Error("creating the artefact store", "err", err)
		return 1
	}
	needsEngine := false
	for _, j := range selected {
		needsEngine = needsEngine || j.Container() != ""
	}
	switch {
	case !needsEngine:
	case ci.Here():
		// The fresh machine is this container: a job asking for debian:12 runs here,
		// as a container in a container would need what this one was not given.
		r.OnThisMachine = true
		fmt.Printf("== %s=1: this machine is the fresh container; container jobs run here\n", ci.HereEnv)
	default:
		e, err := ci.NewEngine(ctx, root, *state, os.Stdout)
		if err != nil {
			logger.Error("the container engine", "err", err)
			return 1
		}
		r.Engine = e
	}

	var results []ci.Result
	for _, j := range selected {
		res := r.Run(ctx, j)
		results = append(results, res)
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Printf("\nci-local: %d job(s), artefacts in %s\n", len(results), r.Artifacts)
	code := 0
	var total time.Duration
	for _, res := range results {
		status := "ok"
		switch {
		case res.Err != nil:
			status, code = "FAILED", 1
		case res.Skipped != "":
			status = "skipped: " + res.Skipped
		}
		total += res.Took
		fmt.Printf("  %-40s %8s  %s  [%s]\n", res.Job.Name(), res.Took.Round(time.Second), status, res.Where)
	}
	fmt.Printf("  %-40s %8s\n", "total", total.Round(time.Second))
	for _, res := range results {
		if res.Err != nil {
			fmt.Printf("\n%s failed:\n%v\n", res.Job.Name(), res.Err)
		}
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		code = 1
	}
	return code
}
