package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/bootlab/bootlab/artifacts/cacheprune"
	"github.com/bootlab/bootlab/harness/config"
)

func init() {
	commands["cache"] = command{"list the image cache (kind, size, last use); `cache prune` removes what was not used recently", cmdCache}
}

const cacheUsage = `usage: bootlab cache [--json]
       bootlab cache prune [--keep-days N] [--max-size SIZE] [--dry-run]

Lists what $BOOTLAB_CACHE holds, one line per entry (built images, Debian packages and
kernels, saved warm states, kernels extracted for direct boots, downloaded ISOs) with
its kind, size, last use and whether it is in use. prune removes the entries not used
for N days (default 14), then the least recently used until the cache is at most SIZE
(8G, 500M; default: no size bound). It never removes an entry in use: its builder's
lock held, open in a running process, or used within the last 6 hours; nor the keys
and probe verdicts.
`

func cmdCache(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "prune" {
		return cmdCachePrune(cfg, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("bootlab cache", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(stderr, cacheUsage); fs.PrintDefaults() }
	asJSON := fs.Bool("json", false, "one JSON array of the entries")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (did you mean `bootlab cache prune`?)", fs.Arg(0))
	}
	now := time.Now()
	es, err := cacheprune.Scan(cfg.Cache, now)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if es == nil {
			es = []cacheprune.Entry{}
		}
		return enc.Encode(es)
	}
	fmt.Fprintf(stdout, "cache %s\n", cfg.Cache)
	writeEntries(stdout, cfg.Cache, es, now)
	return nil
}

func cmdCachePrune(cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab cache prune", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(stderr, cacheUsage); fs.PrintDefaults() }
	keepDays := fs.Int("keep-days", 14, "remove entries not used for `N` days (0: no age bound)")
	maxSize := fs.String("max-size", "", "then remove the least recently used until the cache is at most `SIZE` (8G, 500M)")
	dryRun := fs.Bool("dry-run", false, "say what would go, remove nothing")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("prune: unexpected argument %q", fs.Arg(0))
	}
	if *keepDays < 0 {
		return usagef("--keep-days must be 0 or more, not %d", *keepDays)
	}
	p := cacheprune.Policy{KeepDays: *keepDays, DryRun: *dryRun}
	if *maxSize != "" {
		n, err := cacheprune.ParseSize(*maxSize)
		if err != nil {
			return usagef("--max-size: %v", err)
		}
		if n == 0 {
			return usagef("--max-size 0 would remove everything not in use; give a size, or leave it out")
		}
		p.MaxSize = n
	}
	now := time.Now()
	r, err := cacheprune.Prune(cfg.Cache, p, now)
	if err != nil {
		return fmt.Errorf("pruning the cache %s: %w", cfg.Cache, err)
	}
	verb := "removed"
	if p.DryRun {
		verb = "would remove"
	}
	for _, e := range r.Removed {
		fmt.Fprintf(stdout, "%s %-14s %10s  last used %s  %s\n", verb, e.Kind, cacheprune.FormatSize(e.Size), ago(now, e.LastUse), rel(cfg.Cache, e.Path))
	}
	inUse := 0
	for _, e := range r.Kept {
		if e.InUse != "" {
			inUse++
		}
	}
	fmt.Fprintf(stdout, "cache %s: %s -> %s (%s %d entries; kept %d, %d of them in use)\n", cfg.Cache,
		cacheprune.FormatSize(r.Before), cacheprune.FormatSize(r.After), verb, len(r.Removed), len(r.Kept), inUse)
	if p.MaxSize > 0 && r.After > p.MaxSize {
		fmt.Fprintf(stdout, "cache %s: still above --max-size %s: the rest is in use or kept\n", cfg.Cache, cacheprune.FormatSize(p.MaxSize))
	}
	return nil
}

func writeEntries(w io.Writer, root string, es []cacheprune.Entry, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSIZE\tLAST USE\tIN USE\tPATH")
	var total int64
	byKind := map[string]int64{}
	for _, e := range es {
		total += e.Size
		byKind[e.Kind] += e.Size
		use := e.InUse
		if use == "" {
			use = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Kind, cacheprune.FormatSize(e.Size), ago(now, e.LastUse), use, rel(root, e.Path))
	}
	tw.Flush()
	fmt.Fprintf(w, "total %s in %d entries\n", cacheprune.FormatSize(total), len(es))
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}
