package main

import (
	"context"
	"fmt"
	"io"

	"github.com/bootlab/bootlab/harness/bisect/vmprobe"
)

// exitError carries a subcommand's own exit status (bisect has several).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// cmdBisect is `bootlab bisect`: the engine in harness/bisect with a prober that boots
// each candidate in its own run directory (harness/bisect/vmprobe).
func cmdBisect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "demo" {
		return vmprobe.Demo(ctx, stdout, stderr)
	}
	if code := vmprobe.Main(ctx, args, stdout, stderr); code != 0 {
		return exitError{code}
	}
	return nil
}
