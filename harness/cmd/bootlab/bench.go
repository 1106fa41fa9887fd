package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/bootlab/bootlab/harness/bench"
	"github.com/bootlab/bootlab/harness/config"
)

func cmdBench(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab bench", flag.ContinueOnError)
	rounds := fs.Int("rounds", 50, "round trips measured per kind (medians are reported)")
	bulk := fs.Int("bulk", 1<<20, "bytes moved in the throughput comparison")
	out := fs.String("out", "", "also write the table (Markdown) to this file")
	cfg.AddFlags(fs, config.FlagNotes)
	boot := fs.Bool("boot", false, "measure boots instead of the harness: each --variants boot, spawn -> verified root, side by side in one run")
	variants := fs.String("variants", "mini,fixture-firmware,fixture-direct,fixture-direct-smp2", "with --boot: comma-separated boot variants, in order (bootlab bench --boot --variants list names them)")
	restore := fs.Bool("restore", false, "measure boot once, restore many instead: a cold fixture boot to root, its state saved, a second QEMU restored from it to root")
	blame := fs.Int("blame", 8, "with --boot: the slowest units (systemd-analyze blame) kept per fixture boot; 0 skips blame")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", joinArgs(fs.Args()))
	}
	if err := needs(fs, map[string]string{"variants": "boot", "blame": "boot"}); err != nil {
		return err
	}
	if err := mustPositive("--rounds", *rounds); err != nil {
		return err
	}
	if err := mustPositive("--bulk", *bulk); err != nil {
		return err
	}
	host, _ := os.Hostname()
	header := fmt.Sprintf("Measured %s on %s (%d cores, %s/%s, %s)", time.Now().UTC().Format(time.RFC3339), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if *restore && *boot {
		return usagef("--restore and --boot are separate measurements; give one")
	}
	if *restore {
		r := bench.RunRestore(ctx, *cfg, stderr)
		table := header + ", boot once, restore many (fixture, direct boot):\n\n" + bench.RestoreTable(r)
		fmt.Fprint(stdout, table)
		if *out != "" {
			if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
				return fmt.Errorf("writing %s: %w", *out, err)
			}
		}
		if r.Err != nil {
			return fmt.Errorf("restore benchmark: %w", r.Err)
		}
		return nil
	}
	if *boot {
		return benchBoot(ctx, *cfg, header, *variants, *blame, *out, stdout, stderr)
	}
	res, err := bench.Run(ctx, *cfg, *rounds, *bulk, stderr)
	if err != nil {
		return err
	}
	table := header + ":\n\n" + res.Table()
	fmt.Fprint(stdout, table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", *out, err)
		}
	}
	return nil
}

// benchBoot boots each variant and prints the boot table. Variant names are checked
// before anything boots (a usage error); a variant that fails to boot is a row saying
// so, and the command fails after the table is written.
func benchBoot(ctx context.Context, cfg config.Config, header, variants string, blame int, out string, stdout, stderr io.Writer) error {
	if variants == "list" {
		for _, v := range bench.BootVariants {
			fmt.Fprintf(stdout, "%-24s %s\n", v.Name, v.Why)
		}
		return nil
	}
	if blame < 0 {
		return usagef("--blame must not be negative")
	}
	var names []string
	for _, n := range strings.Split(variants, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return usagef("--variants names no variant")
	}
	vs, err := bench.FindBootVariants(names)
	if err != nil {
		return usagef("--variants: %v", err)
	}
	results := bench.RunBoot(ctx, cfg, vs, blame, stderr)
	table := header + ", boots one at a time, times after QEMU spawned:\n\n" + bench.BootTable(results)
	fmt.Fprint(stdout, table)
	if out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", out, err)
		}
	}
	var failed []string
	for _, r := range results {
		if r.Err != nil {
			failed = append(failed, r.Variant.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("boot benchmark: %s did not reach a verified root shell (run directories under %s)", strings.Join(failed, ", "), cfg.Notes)
	}
	return nil
}
