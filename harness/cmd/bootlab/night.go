package main

import (
	"context"
	"flag"
	"io"

	"github.com/bootlab/bootlab/artifacts/night"
	"github.com/bootlab/bootlab/harness/config"
)

func init() {
	commands["night"] = command{"a nightly CI summary: why each failing run failed (its diff against the last pass), and the nights so far, red or green", cmdNight}
}

// cmdNight prints the explanation of tonight's runs and the nights table (Markdown,
// for $GITHUB_STEP_SUMMARY), records tonight in the history and keeps its passes there
// (artifacts/night). It exits 0 on a red night too: the scenario jobs fail the run.
func cmdNight(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab night --notes DIR --history DIR --id ID", flag.ContinueOnError)
	notes := fs.String(config.FlagNotes, cfg.Notes, "tonight's notes directory: the run directories of every shard ($"+config.EnvNotes+")")
	history := fs.String("history", "", "the directory of earlier nights (ledger.jsonl, nights.jsonl, the last pass of each slug); created if missing")
	id := fs.String("id", "", "this night's id (the workflow run id)")
	artifact := fs.String("artifact", "", "the artefact that carries the notes, named in the summary")
	link := fs.String("link", "", "where the artefact can be downloaded (the workflow run's page)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected arguments %q", fs.Args())
	case *history == "":
		return usagef("--history is required")
	case *id == "":
		return usagef("--id is required")
	}
	if err := existingDir("--notes", *notes); err != nil {
		return err
	}
	_, err := night.Report(ctx, stdout, night.Options{Notes: *notes, History: *history, ID: *id, Artifact: *artifact, Link: *link})
	return err
}
