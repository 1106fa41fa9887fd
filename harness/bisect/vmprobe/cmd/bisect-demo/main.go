// Command bisect-demo runs vmprobe.Demo (`make bisect-demo`) until the lead mounts it
// in the bootlab command.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bootlab/bootlab/harness/bisect/vmprobe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := vmprobe.Demo(ctx, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bisect-demo:", err)
		os.Exit(1)
	}
}
