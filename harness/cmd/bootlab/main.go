// Command bootlab boots images in QEMU, drives them over the serial console, and keeps
// the evidence. Exit status: 0 pass, 1 the verdict is a failure, 2 usage or environment
// error (missing tool, unreadable image, ...).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/lab"
)

// Exit statuses.
const (
	exitPass  = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError is a mistake in how bootlab was called or set up (exit 2).
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

type command struct {
	summary string
	run     func(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"run":     {"boot an image, verify it, capture evidence, write a report", cmdRun},
	"demo":    {"build the default image, boot it and run the end-to-end check", cmdDemo},
	"attach":  {"connect this terminal to a running VM's console (Ctrl-] detaches)", cmdAttach},
	"capture": {"run the standard capture sets on a paused debug VM", cmdCapture},
	"inspect": {"list an ISO's (or kernel+initrd's) files, embedded root key and units", cmdInspect},
	"log":     {"print a run's serial log (--plain: without escape sequences)", cmdLog},
	"report":  {"render report.html for a run, or --trend / --summary over the ledger", cmdReport},
	"bisect":  {"half-split an ordered list of images with a predicate", cmdBisect},
	"bench":   {"measure the harness against its speed targets on the mini image", cmdBench},
}

func main() {
	pauseTerminal = lab.ControllingTerminal
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one subcommand and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	helpOut = stdout
	switch {
	case len(args) == 0:
		// Misuse: the usage on stderr, so a pipe does not take it for output.
		printUsage(stderr)
		return exitUsage
	case args[0] == "-h" || args[0] == "--help" || args[0] == "-help":
		printUsage(stdout)
		return exitPass
	case args[0] == "help":
		// `bootlab help CMD` is `bootlab CMD --help`.
		if len(args) == 1 {
			printUsage(stdout)
			return exitPass
		}
		if _, ok := commands[args[1]]; !ok {
			fmt.Fprintf(stderr, "bootlab help: unknown command %q\n", args[1])
			printUsage(stderr)
			return exitUsage
		}
		args = []string{args[1], "--help"}
	case args[0] == "version" || args[0] == "--version":
		printVersion(stdout)
		return exitPass
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "bootlab: unknown command %q\n", args[0])
		printUsage(stderr)
		return exitUsage
	}
	// The configuration is built once, here, from BOOTLAB_*; each subcommand's flags
	// override it and it is passed down from there (package config lists every setting).
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "bootlab: %v\n", err)
		return exitUsage
	}
	// The first SIGINT/SIGTERM cancels the context: VMs are stopped, run records are
	// marked interrupted and flushed, and the command returns.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = c.run(ctx, &cfg, args[1:], stdout, stderr)
	var ee exitError
	switch {
	case err == nil:
		return exitPass
	case errors.As(err, &ee):
		return ee.code // the subcommand already said why
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "bootlab %s: %v\n", args[0], err)
		return exitUsage
	case errors.Is(err, errHelp):
		return exitPass
	default:
		fmt.Fprintf(stderr, "bootlab %s: %v\n", args[0], err)
		return exitFail
	}
}

var errHelp = errors.New("help requested")

// printVersion says which bootlab this is: the module version and, for a build from a
// checkout, the VCS revision and whether the tree was modified.
func printVersion(w io.Writer) {
	version, rev, dirty, at := "(devel)", "", false, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			case "vcs.time":
				at = s.Value
			}
		}
		fmt.Fprintf(w, "bootlab %s", version)
		if rev != "" {
			fmt.Fprintf(w, " (revision %s", rev)
			if dirty {
				fmt.Fprint(w, ", modified")
			}
			if at != "" {
				fmt.Fprintf(w, ", %s", at)
			}
			fmt.Fprint(w, ")")
		}
		fmt.Fprintf(w, " %s\n", bi.GoVersion)
		return
	}
	fmt.Fprintf(w, "bootlab %s\n", version)
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: bootlab COMMAND [flags] [args]   (flags may follow args; bootlab help COMMAND for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n", "help", "this text, or a command's flags (help COMMAND)")
	fmt.Fprintf(w, "  %-8s %s\n", "version", "bootlab's version and the revision it was built from")
	fmt.Fprintln(w, "\nexit status: 0 pass, 1 verdict failed, 2 usage or environment error")
	fmt.Fprintln(w, "environment: BOOTLAB_NOTES (run directories), BOOTLAB_CACHE (images), BOOTLAB_ACCEL (kvm|tcg),")
	fmt.Fprintln(w, "             BOOTLAB_TIMEOUT_SCALE (multiply every timeout), BOOTLAB_QEMU (QEMU binary);")
	fmt.Fprintln(w, "             the flags --notes, --accel, --timeout-scale, --qemu override them")
}

func joinArgs(a []string) string { return strings.Join(a, " ") }
