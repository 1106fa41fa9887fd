package console

import (
	"context"
	"io"
	"regexp"
	"time"
)

// Replier returns a writer that sends a terminal model's answers to the guest's
// terminal queries (harness/screen's WithReplies), as a real terminal on the serial line
// would. Cursor-position reports are dropped: the console answers ESC [ 6 n itself when
// AnswerDSR is on, and a second answer would reach the program as typed input.
func (c *Console) Replier() io.Writer { return replier{c} }

type replier struct{ con *Console }

var cursorReport = regexp.MustCompile(`^\x1b\[[0-9]+;[0-9]+R$`)

func (w replier) Write(p []byte) (int, error) {
	if cursorReport.Match(p) {
		return len(p), nil
	}
	// Called on the console's drain goroutine: bounded, so a guest that stops reading
	// cannot stall the drain.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := w.con.Send(ctx, string(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// StripCursorReports removes complete cursor-position reports from what a client
// (bootlab attach's terminal) types. The console answers every ESC [ 6 n itself
// (AnswerDSR); a real terminal attached to the socket answers too, and that second,
// later answer reaches the shell as typed input: once the harness has taken the shell
// back into cooked mode, it becomes the first bytes of the next framed command (issue
// 26). A report split across two reads is passed on (terminals write it at once).
func StripCursorReports(p []byte) []byte {
	if !cursorReports.Match(p) {
		return p
	}
	return cursorReports.ReplaceAll(p, nil)
}
