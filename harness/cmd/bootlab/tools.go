package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/artifacts/ansi"
	"github.com/bootlab/bootlab/artifacts/bootmenu"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/artifacts/report"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/lab"
)

// parseFlags parses a subcommand's arguments: flags may come before or after the
// positional arguments (`inspect X.iso --json`), and `--` ends the flags. Asked for with
// -h/--help, the usage goes to helpOut (stdout) and the command ends with exit 0; a
// mistake prints the error and the usage on stderr (exit 2).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := parseAll(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageError{err}
	}
	return nil
}

// needs refuses a flag given without the flag it only works with (req maps a flag's
// name to the one it needs): silently ignoring it would run something else than asked
// (`bench --variants` without `--boot` measured the harness, not the boots).
func needs(fs *flag.FlagSet, req map[string]string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	names := make([]string, 0, len(req))
	for n := range req {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if set[n] && !set[req[n]] {
			return usagef("--%s only works with --%s", n, req[n])
		}
	}
	return nil
}

// helpOut is where asked-for help goes (Main sets it to stdout).
var helpOut io.Writer = os.Stdout

// parseAll is fs.Parse that also takes flags after positional arguments. On
// -h/--help it prints fs's usage to helpOut and returns flag.ErrHelp.
func parseAll(fs *flag.FlagSet, args []string) error {
	var rest []string // after a "--": positional whatever they look like
	for i, a := range args {
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			args = args[:i]
			break
		}
	}
	// Parse quietly first: flag prints the usage on every error, but asked-for help
	// belongs on stdout and a mistake on stderr.
	out := fs.Output()
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			fs.SetOutput(out)
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(helpOut)
				fs.Usage()
				fs.SetOutput(out)
				return err
			}
			fs.Usage() // Main then prints the error itself
			return err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	fs.SetOutput(out)
	// Leave every positional argument in fs.Args().
	return fs.Parse(append([]string{"--"}, append(pos, rest...)...))
}

// cmdAttach connects the terminal to a run's console socket. Ctrl-] detaches; the VM and
// the automation that owns it carry on.
func cmdAttach(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab attach DIR", flag.ContinueOnError)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want the run directory of a paused VM")
	}
	if err := existingDir("run directory", fs.Arg(0)); err != nil {
		return err
	}
	link := filepath.Join(fs.Arg(0), lab.ConsoleSocket)
	target, err := os.Readlink(link)
	if err != nil {
		return usagef("%s: no console socket (is the VM paused in debug mode?): %v", fs.Arg(0), err)
	}
	conn, err := net.Dial("unix", target)
	if err != nil {
		return fmt.Errorf("connecting to the console at %s: %w", target, err)
	}
	defer conn.Close()
	if isTerminal(os.Stdin) {
		fd := int(os.Stdin.Fd())
		old, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
		if err == nil {
			if err := lab.MakeRaw(os.Stdin); err == nil {
				defer unix.IoctlSetTermios(fd, ioctlSetTermios, old)
			}
		}
	}
	fmt.Fprintf(stderr, "bootlab: attached to %s (Ctrl-] detaches)\r\n", fs.Arg(0))
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(stdout, conn)
		close(done)
	}()
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 {
				if i := strings.IndexByte(string(buf[:n]), 0x1d); i >= 0 {
					_, _ = conn.Write(buf[:i])
					conn.Close()
					return
				}
				if _, werr := conn.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				conn.Close()
				return
			}
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	fmt.Fprintf(stderr, "\r\nbootlab: detached\r\n")
	return nil
}

// cmdCapture prints a run's captures; with --running it first asks the paused run that
// owns the VM (bootlab run --debug / --pause-after) to take fresh ones.
func cmdCapture(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab capture [--running] DIR", flag.ContinueOnError)
	running := fs.Bool("running", false, "ask the paused run that owns the VM to capture now")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want a run directory")
	}
	if err := existingDir("run directory", fs.Arg(0)); err != nil {
		return err
	}
	if *running {
		target, err := os.Readlink(filepath.Join(fs.Arg(0), lab.CaptureSocket))
		if err != nil {
			return usagef("%s is not a paused run (no %s): %v", fs.Arg(0), lab.CaptureSocket, err)
		}
		conn, err := net.Dial("unix", target)
		if err != nil {
			return fmt.Errorf("asking the paused run for captures: %w", err)
		}
		defer conn.Close()
		reply, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return fmt.Errorf("waiting for the paused run's captures: %w", err)
		}
		if !strings.HasPrefix(reply, "ok ") {
			return fmt.Errorf("the paused run could not capture: %s", strings.TrimSpace(strings.TrimPrefix(reply, "error ")))
		}
	}
	idx := filepath.Join(fs.Arg(0), "captures", "index.md")
	b, err := os.ReadFile(idx)
	if err != nil {
		return fmt.Errorf("%s has no captures yet (a paused debug run takes them when it pauses): %w", fs.Arg(0), err)
	}
	_, err = stdout.Write(b)
	return err
}

func cmdInspect(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab inspect IMAGE | --kernel K --initrd I", flag.ContinueOnError)
	kernel := fs.String("kernel", "", "inspect a kernel")
	initrd := fs.String("initrd", "", "with --kernel: its initrd")
	files := fs.Bool("files", true, "list the files")
	menuOnly := fs.Bool("menu", false, "only list the ISO's boot menu entries (fast: no squashfs is read)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	switch {
	case *kernel != "" && fs.NArg() == 0:
		if err := readableFile("--kernel", *kernel); err != nil {
			return err
		}
		if *initrd != "" {
			if err := readableFile("--initrd", *initrd); err != nil {
				return err
			}
		}
	case *kernel == "" && *initrd != "":
		return usagef("--initrd needs --kernel")
	case *kernel != "" && *menuOnly:
		return usagef("--menu lists an ISO's boot menu, not a kernel's")
	case *kernel == "" && fs.NArg() == 1:
		if err := readableFile("image", fs.Arg(0)); err != nil {
			return err
		}
	default:
		return usagef("want one ISO, or --kernel (and --initrd)")
	}
	var (
		rep *isoinspect.Report
		err error
	)
	if *kernel != "" {
		if rep, err = isoinspect.InspectKernel(ctx, *kernel, *initrd); err != nil {
			return unreadable(ctx, err)
		}
	} else {
		// The boot menu is read first, through the bounded ISO reader (isoinspect):
		// a hostile image ends here with one line, before anything else reads it.
		menus, merr := bootmenu.ReadISO(ctx, fs.Arg(0))
		if merr != nil {
			return unreadable(ctx, merr)
		}
		if *menuOnly {
			if *asJSON {
				return writeJSON(stdout, struct {
					Menus []*bootmenu.Menu `json:"boot_menus"`
				}{menus})
			}
			return bootmenu.WriteText(stdout, menus)
		}
		if rep, err = isoinspect.InspectISO(ctx, fs.Arg(0)); err != nil {
			return unreadable(ctx, err)
		}
		if *asJSON {
			if err := writeJSON(stdout, struct {
				*isoinspect.Report
				Menus []*bootmenu.Menu `json:"boot_menus"`
			}{rep, menus}); err != nil {
				return err
			}
			return inspectProblems(rep)
		}
		if err := bootmenu.WriteText(stdout, menus); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		err = writeJSON(stdout, rep)
	} else {
		err = rep.WriteText(stdout, *files)
	}
	if err != nil {
		return err
	}
	return inspectProblems(rep)
}

// unreadable is an image that could not be read at all (no ISO9660 image, a hostile
// one, no kernel): exit 2, as main.go documents, unlike a report with problems (exit 1).
// An interruption stays what it is.
func unreadable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	return usageError{err}
}

// inspectProblems makes a report with problems (a layer that could not be read, a key
// that does not parse) exit 1, so a script can tell it from a clean one.
func inspectProblems(rep *isoinspect.Report) error {
	if n := len(rep.Problems); n > 0 {
		return fmt.Errorf("%s: %d problem(s), the first: %s", isoinspect.Printable(rep.Image), n, isoinspect.Printable(rep.Problems[0]))
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cmdLog prints serial.log, raw or made readable.
func cmdLog(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab log DIR", flag.ContinueOnError)
	plain := fs.Bool("plain", false, "remove escape sequences and CRs")
	which := fs.String("file", lab.SerialLog, "which log: serial.log, transcript.log, harness.log, channel.log or qemu-stderr.log")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want a run directory")
	}
	if err := validLogFile(*which); err != nil {
		return err
	}
	if err := existingDir("run directory", fs.Arg(0)); err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(fs.Arg(0), *which))
	if err != nil {
		return usagef("%v", err)
	}
	defer f.Close()
	if !*plain {
		_, err = io.Copy(stdout, f)
		return err
	}
	var n ansi.Normalizer
	r := bufio.NewReaderSize(f, 64<<10)
	buf := make([]byte, 64<<10)
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if _, werr := stdout.Write(n.Write(buf[:k])); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			_, werr := stdout.Write(n.Flush())
			return werr
		}
		if err != nil {
			return err
		}
	}
}

func cmdReport(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootlab report DIR | --trend | --summary", flag.ContinueOnError)
	trend := fs.Bool("trend", false, "chart boot milestones over the runs in the ledger")
	summary := fs.Bool("summary", false, "print a Markdown table of the runs under --notes (for CI job summaries)")
	asJSON := fs.Bool("json", false, "with --summary: print the runs as JSON (summaryJSON in tools.go, docs/running.md) instead of a table")
	notes := fs.String(config.FlagNotes, cfg.Notes, "the notes directory holding runs and ledger.jsonl ($"+config.EnvNotes+")")
	out := fs.String("o", "", "with --trend: write the chart here (default <notes>/trend.html)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	modes := 0
	for _, on := range []bool{*trend, *summary, fs.NArg() > 0} {
		if on {
			modes++
		}
	}
	switch {
	case modes != 1 || fs.NArg() > 1:
		return usagef("want one of: a run directory, --trend or --summary")
	case *out != "" && !*trend:
		return usagef("-o goes with --trend")
	case *asJSON && !*summary:
		return usagef("--json goes with --summary")
	case fs.NArg() == 1:
		if err := existingDir("run directory", fs.Arg(0)); err != nil {
			return err
		}
	default:
		if err := existingDir("--notes", *notes); err != nil {
			return err
		}
	}
	switch {
	case *trend:
		path := *out
		if path == "" {
			path = filepath.Join(*notes, "trend.html")
		}
		skipped, err := report.TrendFile(ctx, runrec.DefaultLedger(*notes), path)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "trend chart: %s (%d unreadable ledger lines skipped)\n", path, skipped)
		return nil
	case *summary && *asJSON:
		rows, err := summaryRows(*notes)
		if err != nil {
			return err
		}
		return writeJSON(stdout, summaryJSONOf(rows))
	case *summary:
		return printSummary(stdout, *notes)
	case fs.NArg() == 1:
		path, err := report.Render(ctx, fs.Arg(0), report.Options{})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, path)
		return nil
	}
	return usagef("want a run directory, --trend or --summary")
}

// summaryRow is one run directory under the notes root.
type summaryRow struct {
	name string
	m    runrec.Metadata
}

// summaryMilestones are the milestones the summary shows, in its columns' order.
var summaryMilestones = []string{"login_prompt", "root_shell", "storage_status", "ipv4", "ssh"}

// summaryRows reads every run directory under notes, newest first (a killed run shows
// as abandoned).
func summaryRows(notes string) ([]summaryRow, error) {
	ents, err := os.ReadDir(notes)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", notes, err)
	}
	var rows []summaryRow
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		m, err := runrec.Settle(filepath.Join(notes, e.Name()))
		if err != nil {
			continue
		}
		rows = append(rows, summaryRow{e.Name(), m})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].m.Started.After(rows[j].m.Started) })
	return rows, nil
}

// summaryJSON is what `bootlab report --summary --json` prints: the runs under the
// notes root, newest first. Its fields are stable; docs/running.md lists them.
type summaryJSON struct {
	Runs []summaryRunJSON `json:"runs"`
}

type summaryRunJSON struct {
	// Run is the run directory's name under the notes root.
	Run string `json:"run"`
	// Outcome is pass, fail, error, interrupted or abandoned.
	Outcome   runrec.Outcome `json:"outcome"`
	Started   time.Time      `json:"started"`
	Scenarios []scenarioJSON `json:"scenarios"`
	// Milestones are the summary's milestones the run reached, in seconds since QEMU
	// spawned (login_prompt, root_shell, storage_status, ipv4, ssh).
	Milestones map[string]float64 `json:"milestones"`
	Accel      string             `json:"accel"`
}

type scenarioJSON struct {
	Name    string         `json:"name"`
	Outcome runrec.Outcome `json:"outcome"`
}

func summaryJSONOf(rows []summaryRow) summaryJSON {
	out := summaryJSON{Runs: []summaryRunJSON{}}
	for _, r := range rows {
		j := summaryRunJSON{Run: r.name, Outcome: r.m.Outcome, Started: r.m.Started, Accel: r.m.Accel.Name,
			Scenarios: []scenarioJSON{}, Milestones: map[string]float64{}}
		for _, s := range r.m.Scenarios {
			j.Scenarios = append(j.Scenarios, scenarioJSON{s.Name, s.Outcome})
		}
		for _, name := range summaryMilestones {
			if x, ok := r.m.Milestone(name); ok {
				j.Milestones[name] = x.At.D().Seconds()
			}
		}
		out.Runs = append(out.Runs, j)
	}
	return out
}

// printSummary writes one table row per run directory under notes (newest first).
func printSummary(w io.Writer, notes string) error {
	rows, err := summaryRows(notes)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "| run | outcome | scenarios | login prompt | root shell | storage | ipv4 | ssh | accel |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		ms := func(name string) string {
			if x, ok := r.m.Milestone(name); ok {
				return fmt.Sprintf("%.1fs", x.At.D().Seconds())
			}
			return "-"
		}
		var sc []string
		for _, s := range r.m.Scenarios {
			sc = append(sc, s.Name+"="+string(s.Outcome))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.m.Outcome, strings.Join(sc, ", "),
			ms("login_prompt"), ms("root_shell"), ms("storage_status"), ms("ipv4"), ms("ssh"), r.m.Accel.Name)
	}
	return nil
}
