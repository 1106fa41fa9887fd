package runrec

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Failure is what a diagnostics file explains. Every field is optional; the body says
// "<none recorded>" for an empty one so a reader can tell "absent" from "cut off".
type Failure struct {
	// What failed, one line ("waiting for login prompt: context deadline exceeded").
	Summary string
	// Context is free text: the wait that timed out, the last command, the expectation.
	Context string
	// SerialTail is the end of serial.log, already made readable (see TailFile).
	SerialTail string
	// Transcript is the slice of transcript.log around the failure.
	Transcript string
	// QEMUExit is the emulator's state: "running (pid 1234)", "exit status 1",
	// "signal: killed".
	QEMUExit string
	At       time.Time
}

// FailureBody renders f as the text of a diagnostics file: short labelled header lines
// first (grep-able), then each long section under its own heading.
func FailureBody(f Failure) string {
	var b strings.Builder
	at := f.At
	if at.IsZero() {
		at = time.Now()
	}
	fmt.Fprintf(&b, "Failure: %s\n", orNone(f.Summary))
	fmt.Fprintf(&b, "Captured at: %s\n", at.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "QEMU: %s\n", orNone(f.QEMUExit))
	section := func(title, body string) {
		fmt.Fprintf(&b, "\n== %s ==\n", title)
		b.WriteString(orNone(body))
		if !strings.HasSuffix(body, "\n") {
			b.WriteByte('\n')
		}
	}
	section("Failure context", f.Context)
	section("Serial log tail", f.SerialTail)
	section("Transcript", f.Transcript)
	return b.String()
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "<none recorded>"
	}
	return s
}

// TailFile returns at most the last n lines of path, reading only its end (serial logs
// of a flooding kernel reach many MiB). normalise, if not nil, is applied to the bytes
// first (pass the harness's ANSI normaliser so the tail is readable).
func TailFile(path string, n int, normalise func([]byte) []byte) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("tail of %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("tail of %s: %w", path, err)
	}
	// 512 bytes a line is generous for a console; a longer line is just cut at the front.
	const maxBytes = 1 << 20
	want := int64(n) * 512
	if want > maxBytes {
		want = maxBytes
	}
	off := st.Size() - want
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return "", fmt.Errorf("tail of %s: %w", path, err)
	}
	if normalise != nil {
		buf = normalise(buf)
	}
	return string(lastLines(buf, n)), nil
}

func lastLines(b []byte, n int) []byte {
	b = bytes.TrimRight(b, "\n")
	if n <= 0 {
		return nil
	}
	i := len(b)
	for k := 0; k < n; k++ {
		j := bytes.LastIndexByte(b[:i], '\n')
		if j < 0 {
			return append(b, '\n')
		}
		i = j
	}
	return append(b[i+1:], '\n')
}
