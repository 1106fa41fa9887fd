package lab

import (
	"context"
	"fmt"
	"time"

	"github.com/bootlab/bootlab/harness/capture"
	"github.com/bootlab/bootlab/harness/shell"
)

// Exec runs a command for captures: a non-zero status is data, not an error, and an
// error after QEMU is gone says so (capture.ErrGone) so a capture set stops early.
func (l *Lab) Exec(ctx context.Context, cmd string) ([]byte, int, error) {
	r, err := l.vm.Run(ctx, cmd, shell.AllowFail())
	if err != nil && !l.vm.Running() {
		return r.Output, -1, fmt.Errorf("%w: %w", capture.ErrGone, err)
	}
	return r.Output, r.ExitStatus, err
}

// Capture runs capture sets into the run directory's captures/.
func (l *Lab) Capture(ctx context.Context, sets ...capture.Set) (capture.Index, error) {
	if l.vm.Shell() == nil {
		return capture.Index{}, fmt.Errorf("no shell to capture with")
	}
	return capture.Capture(ctx, l, l.rec.Path("captures"), sets...)
}

// WaitFailed records a wait that did not succeed: a diagnostic naming the wait and the
// capture sets that explain that kind of wait (capture.WaitDiagnostics), taken at once
// while the guest is in the state that failed.
func (l *Lab) WaitFailed(ctx context.Context, w capture.Wait, what string, err error) string {
	path := l.diagnose("wait", what, err, "")
	if l.vm.Shell() != nil && l.vm.Running() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		if _, cerr := l.Capture(cctx, capture.WaitDiagnostics(w)...); cerr != nil {
			l.log.Warn("lab.capture_incomplete", "error", cerr.Error())
		}
	}
	return path
}
