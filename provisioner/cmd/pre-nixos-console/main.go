// Command pre-nixos-console; see docs/provisioner.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/bootlab/bootlab/provisioner/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Console(ctx, os.Args[1:], cli.Env{})
	stop()
	os.Exit(code)
}
