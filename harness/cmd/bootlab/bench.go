package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/bootlab/bootlab/harness/bench"
	"github.com/bootlab/bootlab/harness/config"
)

func cmdBench(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab bench", flag.ContinueOnError)
	rounds := fs.Int("rounds", 50, "round trips measured per kind (medians are reported)")
	bulk := fs.Int("bulk", 1<<20, "bytes moved in the throughput comparison")
	out := fs.String("out", "", "also write the table (Markdown) to this file")
	notes := fs.String("notes", filepath.Join(os.TempDir(), "bootlab-bench"), "where the benchmark's run directory goes")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", joinArgs(fs.Args()))
	}
	if err := mustPositive("--rounds", *rounds); err != nil {
		return err
	}
	if err := mustPositive("--bulk", *bulk); err != nil {
		return err
	}
	res, err := bench.Run(ctx, *notes, *rounds, *bulk, stderr)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	table := fmt.Sprintf("Measured %s on %s (%d cores, %s/%s, %s):\n\n%s", time.Now().UTC().Format(time.RFC3339), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), res.Table())
	fmt.Fprint(stdout, table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", *out, err)
		}
	}
	return nil
}
