package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/config"
)

func init() {
	commands["diff"] = command{"what changed between two runs (or a run and the last pass): milestones, units, journal, kernel, pre-nixos", cmdDiff}
	commands["promote"] = command{"copy a run's serial log to docs/boot-logs and write a test report to docs/test-reports", cmdPromote}
}

// parseInterspersed parses flags that may come after the positional arguments
// (`bootlab diff A B --json`) and returns the positional ones (parseFlags).
func parseInterspersed(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	if err := parseFlags(fs, args, stderr); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// runDirArg checks that dir is a run directory before anything is read or written.
func runDirArg(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, runrec.MetadataFile)); err != nil {
		return usagef("%s is not a run directory (no %s)", dir, runrec.MetadataFile)
	}
	return nil
}

// ledgerFor is the ledger next to a run directory (the notes root holds both), unless
// given.
func ledgerFor(cfg *config.Config, run, given string) string {
	if given != "" {
		return given
	}
	abs, err := filepath.Abs(run)
	if err != nil {
		return runrec.DefaultLedger(cfg.Notes)
	}
	return runrec.DefaultLedger(filepath.Dir(abs))
}

// cmdDiff compares two runs. Exit status as diff(1): 0 no differences, 1 differences,
// 2 usage or a directory that is not a run.
func cmdDiff(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab diff RUN_A RUN_B | --against-last-pass RUN", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the diff as JSON")
	lastPass := fs.Bool("against-last-pass", false, "compare RUN with the newest earlier passing run of the same image or scenario in the ledger")
	ledger := fs.String("ledger", "", "ledger for --against-last-pass (default: ledger.jsonl next to RUN)")
	pos, err := parseInterspersed(fs, args, stderr)
	if err != nil {
		return err
	}
	var a, b string
	switch {
	case *lastPass && len(pos) == 1:
		b = pos[0]
		if err := runDirArg(b); err != nil {
			return err
		}
		m, err := runrec.ReadMetadata(b)
		if err != nil {
			return usageError{err}
		}
		a, err = rundiff.LastPass(ledgerFor(cfg, b, *ledger), m.Slug, b)
		if err != nil {
			return usageError{err}
		}
		if a == "" {
			return usagef("no earlier passing run of %q in %s", m.Slug, ledgerFor(cfg, b, *ledger))
		}
	case !*lastPass && len(pos) == 2:
		a, b = pos[0], pos[1]
	default:
		return usagef("want RUN_A RUN_B, or --against-last-pass RUN")
	}
	for _, d := range []string{a, b} {
		if err := runDirArg(d); err != nil {
			return err
		}
	}
	d, err := rundiff.CompareDirs(a, b, rundiff.Options{})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return err
		}
	} else if err := d.WriteText(stdout); err != nil {
		return err
	}
	if !d.Empty() {
		return exitError{exitFail}
	}
	return nil
}

// cmdPromote copies a run into the docs: its serial log and a markdown test report
// with the diff against the last pass.
func cmdPromote(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab promote RUN", flag.ContinueOnError)
	docs := fs.String("docs", "docs", "docs directory: boot-logs/ and test-reports/ go under it")
	ledger := fs.String("ledger", "", "ledger to find the last pass in (default: ledger.jsonl next to RUN)")
	against := fs.String("against", "", "diff against this run instead of the last pass")
	pos, err := parseInterspersed(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one run directory")
	}
	run := pos[0]
	if err := runDirArg(run); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(run, runrec.SerialLog)); err != nil {
		return usagef("%s has no %s to promote", run, runrec.SerialLog)
	}
	base := *against
	if base != "" {
		if err := runDirArg(base); err != nil {
			return err
		}
	} else {
		m, err := runrec.ReadMetadata(run)
		if err != nil {
			return usageError{err}
		}
		if base, err = rundiff.LastPass(ledgerFor(cfg, run, *ledger), m.Slug, run); err != nil {
			return err
		}
	}
	p, err := rundiff.Promote(run, *docs, base)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "boot log: %s\ntest report: %s\n", p.BootLog, p.TestReport)
	return nil
}
