package bisect

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const usage = `usage:
  bootlab bisect [flags] [CANDIDATE...]     start a bisection (flags first)
  bootlab bisect --resume DIR               continue an interrupted one
  bootlab bisect replay DIR                 print the decision trail of DIR

Candidates (in order, oldest first; exactly one source):
  --candidates FILE    list file: "name iso=PATH" or "name kernel=PATH initrd=PATH append=\"...\"" per line
  --candidates-dir DIR directory sorted by Debian version (*.iso, vmlinuz-VERSION, VERSION/)
  CANDIDATE...         ISO paths, or quoted list-file lines
Predicate (exactly one):
  --scenario NAME      a scenario from ./scenarios
  --script FILE        an expect script (send/expect/run/assert-output)
  --run CMD            a host shell command: exit 0 good, 125 skip, 1-127 bad, >127 abort
Exit status: 0 first bad found, 3 ambiguous (skips), 4 endpoints do not hold, 1 error, 2 usage.

Flags:
`

// Exit statuses of Main.
const (
	ExitFound     = 0
	ExitError     = 1
	ExitUsage     = 2
	ExitAmbiguous = 3
	ExitEndpoints = 4
)

// Flags are the settings of `bootlab bisect`. The command line is parsed once, by
// cmd/bootlab, which registers these next to the VM flags on its one FlagSet and then
// calls Execute.
type Flags struct {
	List, FromDir, Append, Dir, Resume string
	Parallel, Retries                  int
	ProbeTimeout                       time.Duration
	Flaky                              string
	Scenario, Script, Command          string
	Quiet                              bool
}

// Register adds the bisect flags to fs, with their defaults.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.List, "candidates", "", "candidate list `FILE`")
	fs.StringVar(&f.FromDir, "candidates-dir", "", "candidate `DIR`ectory, sorted by Debian version")
	fs.StringVar(&f.Append, "append", "", "kernel command line for --candidates-dir kernels without an append file")
	fs.StringVar(&f.Dir, "dir", "", "bisect `DIR`ectory for bisect.jsonl, probes/ and report.html (default bisect-<UTC time>)")
	fs.StringVar(&f.Resume, "resume", "", "resume the bisection in `DIR`")
	fs.IntVar(&f.Parallel, "parallel", 1, "probe `k` candidates per round on k VMs (k-ary search)")
	fs.IntVar(&f.Retries, "retries", 0, "re-probe every tested candidate `n` more times and report the flake rate")
	fs.DurationVar(&f.ProbeTimeout, "probe-timeout", 30*time.Minute, "bound on one attempt (boot + predicate); an overrun is a skip; 0 = none")
	fs.StringVar(&f.Flaky, "flaky", string(FlakyBad), "verdict of a candidate with mixed results: bad (any bad attempt) or majority")
	fs.StringVar(&f.Scenario, "scenario", "", "predicate: scenario `NAME`")
	fs.StringVar(&f.Script, "script", "", "predicate: expect script `FILE`")
	fs.StringVar(&f.Command, "run", "", "predicate: host shell `CMD`")
	fs.BoolVar(&f.Quiet, "q", false, "log only warnings and errors to stderr, not every probe and decision")
}

// Usage is the text before the flag list of `bootlab bisect --help`.
const Usage = usage

// ReplayMain is `bootlab bisect replay DIR` (args after "replay").
func ReplayMain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	if err := Replay(stdout, args[0]); err != nil {
		fmt.Fprintf(stderr, "bootlab bisect replay: %v\n", err)
		return ExitError
	}
	return ExitFound
}

// Execute runs or resumes the bisection described by f, with the candidate arguments
// cands (what is left after the flags), probing with prober; it prints the report to
// stdout and logs (slog text) to stderr. A prober implementing PredicateUser gets the
// predicate from the flags, or from the log when resuming.
func Execute(ctx context.Context, f Flags, cands []string, prober Prober, stdout, stderr io.Writer) int {
	var (
		list, fromDir, appendL, dir, resume = &f.List, &f.FromDir, &f.Append, &f.Dir, &f.Resume
		parallel, retries, probeTO, flaky   = &f.Parallel, &f.Retries, &f.ProbeTimeout, &f.Flaky
		scenario, script, command, quiet    = &f.Scenario, &f.Script, &f.Command, &f.Quiet
	)
	fs := candidateArgs(cands)
	// Progress is on by default: a bisection over VMs runs for minutes
	// and silence looks like a hang.
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "bootlab bisect: "+format+"\n", a...)
		return ExitUsage
	}
	for _, a := range fs.Args() {
		if strings.HasPrefix(a, "-") {
			return usageErr("flags go before the candidate arguments (%q came after one)", a)
		}
	}
	if *parallel < 1 {
		return usageErr("--parallel must be at least 1")
	}
	if *retries < 0 {
		return usageErr("--retries must not be negative")
	}
	if *probeTO < 0 {
		return usageErr("--probe-timeout must not be negative")
	}
	if fp := FlakyPolicy(*flaky); fp != FlakyBad && fp != FlakyMajority {
		return usageErr("--flaky must be %q or %q, not %q", FlakyBad, FlakyMajority, *flaky)
	}
	if prober == nil {
		return usageErr("no prober configured (this bootlab was built without a VM backend)")
	}

	var res *Result
	var err error
	if *resume != "" {
		if *list != "" || *fromDir != "" || fs.NArg() > 0 || *scenario != "" || *script != "" || *command != "" || *dir != "" {
			return usageErr("--resume takes the candidates, predicate and settings from the log; give no others")
		}
		cfg, lerr := LoadConfig(*resume)
		if lerr != nil {
			fmt.Fprintf(stderr, "bootlab bisect: %v\n", lerr)
			return ExitError
		}
		if code := usePredicate(prober, cfg.Predicate, stderr); code != 0 {
			return code
		}
		// The images may have changed since the log was started.
		if cerr := CheckISOs(ctx, cfg.Candidates); cerr != nil {
			fmt.Fprintf(stderr, "bootlab bisect: %v\n", cerr)
			return ExitUsage
		}
		res, err = Resume(ctx, *resume, prober, logger)
	} else {
		sources := 0
		for _, set := range []bool{*list != "", *fromDir != "", fs.NArg() > 0} {
			if set {
				sources++
			}
		}
		if sources != 1 {
			return usageErr("give the candidates exactly one way: --candidates FILE, --candidates-dir DIR or arguments")
		}
		var cands []Candidate
		var cerr error
		switch {
		case *list != "":
			cands, cerr = LoadCandidates(*list)
		case *fromDir != "":
			cands, cerr = LoadCandidatesDir(*fromDir, *appendL)
		default:
			cands, cerr = CandidatesFromArgs(fs.Args())
		}
		if cerr == nil {
			cerr = CheckISOs(ctx, cands)
		}
		if cerr != nil {
			fmt.Fprintf(stderr, "bootlab bisect: %v\n", cerr)
			return ExitUsage
		}
		pred, perr := predicateFromFlags(*scenario, *script, *command)
		if perr != nil {
			return usageErr("%v", perr)
		}
		if code := usePredicate(prober, pred, stderr); code != 0 {
			return code
		}
		if cc, ok := prober.(CandidateChecker); ok {
			if err := cc.CheckCandidates(cands); err != nil {
				return usageErr("%v", err)
			}
		}
		if *dir == "" {
			*dir = "bisect-" + time.Now().UTC().Format("2006-01-02T15-04-05Z")
		}
		d := *dir
		res, err = Run(ctx, Config{Candidates: cands, Dir: d, Parallel: *parallel, Retries: *retries,
			Flaky: FlakyPolicy(*flaky), Predicate: pred, Logger: logger, ProbeTimeout: *probeTO}, prober)
	}
	if res != nil {
		if werr := WriteTextReport(stdout, res); werr != nil {
			fmt.Fprintf(stderr, "bootlab bisect: writing report: %v\n", werr)
		}
	}
	var epErr *EndpointError
	switch {
	case errors.As(err, &epErr):
		fmt.Fprintf(stderr, "bootlab bisect: %v\n", err)
		return ExitEndpoints
	case err != nil:
		fmt.Fprintf(stderr, "bootlab bisect: %v\n", err)
		bisectDir := *resume // --resume and --dir exclude each other
		if bisectDir == "" {
			bisectDir = *dir
		}
		if _, serr := os.Stat(filepath.Join(bisectDir, LogName)); res == nil && serr == nil {
			fmt.Fprintf(stderr, "continue with: bootlab bisect --resume %s\n", bisectDir)
		}
		return ExitError
	case res.Status == StatusAmbiguous:
		return ExitAmbiguous
	}
	return ExitFound
}

// candidateArgs gives Execute's positional arguments the FlagSet's Args/NArg shape.
type candidateArgs []string

func (c candidateArgs) Args() []string { return c }
func (c candidateArgs) NArg() int      { return len(c) }

// CandidateChecker is a Prober that can reject a candidate list before any probe (an
// unknown profile= name): a usage error, exit 2.
type CandidateChecker interface {
	CheckCandidates([]Candidate) error
}

func usePredicate(prober Prober, pred *Predicate, stderr io.Writer) int {
	pu, ok := prober.(PredicateUser)
	if !ok {
		if pred != nil {
			fmt.Fprintf(stderr, "bootlab bisect: this prober takes no predicate, yet %s was given\n", describePredicate(pred))
			return ExitUsage
		}
		return 0
	}
	if pred == nil {
		fmt.Fprintln(stderr, "bootlab bisect: give a predicate: --scenario NAME, --script FILE or --run CMD")
		return ExitUsage
	}
	if err := pu.UsePredicate(pred); err != nil {
		fmt.Fprintf(stderr, "bootlab bisect: predicate %s: %v\n", describePredicate(pred), err)
		return ExitUsage
	}
	return 0
}

func predicateFromFlags(scenario, script, command string) (*Predicate, error) {
	n := 0
	for _, s := range []string{scenario, script, command} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, errors.New("give one predicate: --scenario, --script or --run")
	case scenario != "":
		return &Predicate{Kind: PredicateScenario, Scenario: scenario}, nil
	case command != "":
		return &Predicate{Kind: PredicateCommand, Command: command}, nil
	case script != "":
		b, err := os.ReadFile(script)
		if err != nil {
			return nil, fmt.Errorf("reading expect script: %w", err)
		}
		abs, err := filepath.Abs(script)
		if err != nil {
			abs = script
		}
		p := &Predicate{Kind: PredicateScript, ScriptPath: abs, ScriptText: string(b)}
		if _, err := p.Script(); err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, nil
}
