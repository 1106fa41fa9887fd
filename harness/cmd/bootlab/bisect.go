package main

import (
	"context"
	"io"
)

func cmdBisect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return usagef("not wired yet")
}
