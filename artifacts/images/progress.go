package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"

	"github.com/bootlab/bootlab/artifacts/progress"
)

var (
	progressMu   sync.Mutex
	progressLine *progress.Line
)

// SetProgress makes builds report their phases, mksquashfs percentages and package
// downloads on l (a live line on a terminal, plain lines elsewhere); nil turns it off.
// bootlab sets it for its own stderr.
func SetProgress(l *progress.Line) {
	progressMu.Lock()
	progressLine = l
	progressMu.Unlock()
}

// reporter is the current progress line (nil, which discards, when none is set).
func reporter() *progress.Line {
	progressMu.Lock()
	defer progressMu.Unlock()
	return progressLine
}

// runProgress runs a command whose stdout is progress (w, closed when it ends); its
// stderr is folded into the error as run does.
func runProgress(ctx context.Context, w io.WriteCloser, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	err := cmd.Run()
	_ = w.Close()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return nil
}
