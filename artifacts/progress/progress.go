// Package progress reports long work (image builds, downloads, waits) as it goes: on a
// terminal as one live line rewritten in place, elsewhere (CI logs, files) as plain
// lines, at most one every Every for the same step so a log is not flooded. A cold
// fixture build used to print one line and then nothing for minutes.
package progress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Line is one progress line. Its methods are safe for concurrent use; a nil *Line
// discards everything, so callers need no checks.
type Line struct {
	mu    sync.Mutex
	w     io.Writer
	live  bool
	every time.Duration
	now   func() time.Time

	step      string    // the step of the last plain line
	lastPlain time.Time // when it was written
	shown     bool      // a live line is on screen (not yet ended with a newline)
	width     int
}

// New reports to w; live rewrites one line in place (for a terminal).
func New(w io.Writer, live bool) *Line {
	return &Line{w: w, live: live, every: 10 * time.Second, now: time.Now, width: 120}
}

// For reports to w, live when w is a terminal.
func For(w io.Writer) *Line {
	f, ok := w.(*os.File)
	live := false
	if ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
		live = err == nil
	}
	return New(w, live)
}

// SetEvery sets how often a plain line repeats for the same step (default 10 s).
func (l *Line) SetEvery(d time.Duration) {
	if l != nil {
		l.mu.Lock()
		l.every = d
		l.mu.Unlock()
	}
}

// Update shows the state of step. Live: the line is rewritten now. Plain: a line is
// written when the step changes, or when Every has passed since the last one.
func (l *Line) Update(step, text string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live {
		if len(text) > l.width {
			text = text[:l.width-3] + "..."
		}
		fmt.Fprintf(l.w, "\r\x1b[K%s", text)
		l.shown = true
		return
	}
	now := l.now()
	if step == l.step && now.Sub(l.lastPlain) < l.every {
		return
	}
	l.step, l.lastPlain = step, now
	fmt.Fprintln(l.w, text)
}

// Done ends a step with a line that stays.
func (l *Line) Done(text string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live {
		fmt.Fprintf(l.w, "\r\x1b[K%s\n", text)
		l.shown = false
		return
	}
	l.step = ""
	fmt.Fprintln(l.w, text)
}

// Write prints ordinary output (whole lines) among the progress: on a terminal the live
// line is cleared first and redrawn by the next update, so the two never share a line.
func (l *Line) Write(p []byte) (int, error) {
	if l == nil {
		return len(p), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live && l.shown {
		fmt.Fprint(l.w, "\r\x1b[K")
		l.shown = false
	}
	if _, err := l.w.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Elapsed formats a duration for a progress line: 7s, 2m05s.
func Elapsed(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// clock is the line's time source; a nil line (which discards) still has one, so the
// writers below can format elapsed times without each checking for nil.
func (l *Line) clock() time.Time {
	if l == nil {
		return time.Now()
	}
	return l.now()
}

// Ticker calls Update(step, text(elapsed)) now and every second until the returned stop
// is called: for waits whose only news is how long they have taken.
func (l *Line) Ticker(step string, text func(elapsed time.Duration) string) (stop func()) {
	if l == nil {
		return func() {}
	}
	start := l.now()
	done, finished := make(chan struct{}), make(chan struct{})
	var once sync.Once
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		l.Update(step, text(0))
		for {
			select {
			case <-done:
				return
			case <-t.C:
				l.Update(step, text(l.now().Sub(start)))
			}
		}
	}()
	// stop returns once no further update can come, so a Done after it stays last.
	return func() { once.Do(func() { close(done) }); <-finished }
}

// Mmdebstrap is a writer for mmdebstrap's output (also kept in its log by the caller):
// each "I: ..." line is a phase, shown with the build's elapsed time.
func (l *Line) Mmdebstrap(start time.Time) io.WriteCloser {
	return l.lines(func(line string) {
		if msg, ok := strings.CutPrefix(line, "I: "); ok {
			// customize hooks name long temporary paths; the phase is what matters
			if i := strings.Index(msg, " in shell: "); i >= 0 {
				msg = msg[:i]
			}
			l.Update("mmdebstrap "+msg, fmt.Sprintf("mmdebstrap: %s (%s)", msg, Elapsed(l.clock().Sub(start))))
		}
	})
}

var squashfsPercent = regexp.MustCompile(`(\d+)/(\d+)\s+(\d+)%`)

// Squashfs is a writer for mksquashfs's progress bar (run without -no-progress): it
// rewrites the bar with CRs, so records end at CR or LF; the percentage is shown.
func (l *Line) Squashfs(what string, start time.Time) io.WriteCloser {
	return l.lines(func(rec string) {
		m := squashfsPercent.FindStringSubmatch(rec)
		if m == nil {
			return
		}
		pct, _ := strconv.Atoi(m[3])
		l.Update("squashfs "+what, fmt.Sprintf("mksquashfs %s: %d%% (%s of %s files and blocks, %s)", what, pct, m[1], m[2], Elapsed(l.clock().Sub(start))))
	})
}

// lines splits what is written at CR and LF and hands each record to f.
func (l *Line) lines(f func(string)) io.WriteCloser {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sc.Split(splitCRLF)
		for sc.Scan() {
			f(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return &lineWriter{pw: pw, done: done}
}

type lineWriter struct {
	pw   *io.PipeWriter
	done chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) { return w.pw.Write(p) }

// Close flushes the last record and waits until it is reported.
func (w *lineWriter) Close() error {
	err := w.pw.Close()
	<-w.done
	return err
}

func splitCRLF(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		if b == '\n' || b == '\r' {
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// Wait shows a wait as it lasts, "what (12s)" every second (on a terminal; plain lines
// repeat every Every), and ends it with a line that stays and says how long it took:
// "what: done in 12s" or "what: failed after 12s". end is called once the wait is over,
// with its error.
func (l *Line) Wait(what string) (end func(err error)) {
	if l == nil {
		return func(error) {}
	}
	start := l.now()
	stop := l.Ticker("wait "+what, func(e time.Duration) string { return fmt.Sprintf("%s (%s)", what, Elapsed(e)) })
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			stop()
			took := Elapsed(l.now().Sub(start))
			if err != nil {
				l.Done(fmt.Sprintf("%s: failed after %s", what, took))
				return
			}
			l.Done(fmt.Sprintf("%s: done in %s", what, took))
		})
	}
}

type ctxKey struct{}

// WithLine returns a context whose waits (shell waits in the guest, SSH logins) report
// on l. Waits deep in the harness find it there, so no layer between has to pass it on.
func WithLine(ctx context.Context, l *Line) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// FromContext is the line WithLine put in ctx, or nil (which discards).
func FromContext(ctx context.Context) *Line {
	l, _ := ctx.Value(ctxKey{}).(*Line)
	return l
}
