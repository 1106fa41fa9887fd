package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bootlab/bootlab/harness/bisect"
	"github.com/bootlab/bootlab/harness/bisect/vmprobe"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/lab"
)

// exitError carries a subcommand's own exit status (bisect has several).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// cmdBisect is `bootlab bisect`: the engine in harness/bisect with a prober that boots
// each candidate in its own run directory (harness/bisect/vmprobe). The whole command
// line (bisect's flags, the VM flags, the configuration flags) is parsed here, once;
// the engine gets the parsed bisect.Flags and the VM side only boots.
func cmdBisect(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "demo" {
		switch {
		case len(args) == 1:
			return vmprobe.Demo(ctx, *cfg, stdout, stderr)
		case len(args) == 2 && args[1] == "--isos":
			return vmprobe.DemoISOs(ctx, *cfg, stdout, stderr)
		}
		return usagef("bootlab bisect demo takes no argument but --isos (the installer ISO series), not %q", strings.Join(args[1:], " "))
	}
	if len(args) > 0 && args[0] == "replay" {
		return exitCode(bisect.ReplayMain(args[1:], stdout, stderr))
	}
	fs := flag.NewFlagSet("bootlab bisect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f bisect.Flags
	f.Register(fs)
	cfg.AddFlags(fs, config.FlagAccel, config.FlagTimeoutScale, config.FlagQEMU)
	var (
		profile = fs.String("profile", lab.ProfileMini.Name, "image console profile: mini, fixture, nixos, debian-installer (its dialogs are walked to its shell)")
		memory  = fs.Int("memory", 0, "guest memory in MiB (default 512)")
		loginTO = fs.Duration("login-timeout", 0, "bound on boot + login (default: the harness's)")
		ssh     = fs.Bool("ssh", false, "forward guest port 22 for script predicates too (command predicates always get it)")
		asJSON  = fs.Bool("json", false, "print the result as JSON on stdout (the bisect directory's result.json, docs/bisect.md) instead of the text report")
	)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), bisect.Usage); fs.PrintDefaults() }
	if err := parseAll(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return exitError{bisect.ExitUsage} // flag has said why
	}
	prof, err := lab.ProfileByName(*profile)
	if err != nil {
		return usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	lab.HandleSignals()
	p := &vmprobe.Prober{Profile: prof, MemoryMB: *memory, Accel: cfg.Accel, LoginTimeout: *loginTO, SSH: *ssh, Config: *cfg}
	if !*asJSON {
		return exitCode(bisect.Execute(ctx, f, fs.Args(), p, stdout, stderr))
	}
	// --json: the engine's own result.json is the answer, so the text report is not
	// printed and the file is copied out; the directory is named here when it was not.
	dir := f.Resume
	if dir == "" {
		if f.Dir == "" {
			f.Dir = "bisect-" + time.Now().UTC().Format("2006-01-02T15-04-05Z")
		}
		dir = f.Dir
	}
	code := bisect.Execute(ctx, f, fs.Args(), p, io.Discard, stderr)
	if b, err := os.ReadFile(filepath.Join(dir, bisect.ResultFile)); err == nil {
		if _, err := stdout.Write(b); err != nil {
			return err
		}
	}
	return exitCode(code)
}

func exitCode(code int) error {
	if code != 0 {
		return exitError{code}
	}
	return nil
}
