package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/inject"
	"github.com/bootlab/bootlab/harness/lab"
)

// injectDir holds an injection's files (inject.PlanFile, ...) in the run directory.
const injectDir = "inject"

// injectPreNixos carries pre-nixos into a running baseline that does not ship it (see
// package inject): the checkout's static binary goes over the frame channel (the
// console when there is none), runs with --plan-only, and its plan and logs are kept in
// <run>/inject, with the guest's own /sys/block beside them and the plan checked
// against it.
func injectPreNixos(ctx context.Context, cache images.Cache, l *lab.Lab, stdout io.Writer) error {
	data, err := inject.PreNixos(ctx, cache)
	if err != nil {
		return err
	}
	out := l.Path(injectDir)
	res, err := inject.Inject(ctx, l, inject.Options{Binary: data, Dir: out, Timeout: l.CommandTimeout()})
	if res != nil && res.SHA256 != "" {
		fmt.Fprintf(stdout, "inject: pre-nixos (%d bytes, sha256 %s) is %s in the guest (over %s)\n", len(data), res.SHA256, inject.DefaultPath, l.Transport())
	}
	if res != nil && len(res.Missing) > 0 {
		fmt.Fprintf(stdout, "inject: commands pre-nixos called that the guest does not have: %s\n", strings.Join(res.Missing, ", "))
	}
	var missing *inject.MissingToolsError
	if errors.As(err, &missing) {
		return fmt.Errorf("%w (log: %s)", err, filepath.Join(out, inject.LogFile))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "inject: pre-nixos --plan-only planned; plan: %s\n", filepath.Join(out, inject.PlanFile))
	facts, err := inject.ReadSysBlock(ctx, l)
	if err != nil {
		return err
	}
	if err := inject.Check(res, facts); err != nil {
		return fmt.Errorf("checking the injected pre-nixos's plan against the guest's /sys: %w", err)
	}
	fmt.Fprintf(stdout, "inject: the plan matches the guest's /sys/block (%d candidate disks)\n", len(inject.Candidates(facts)))
	return nil
}
