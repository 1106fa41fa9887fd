package shell

import (
	"regexp"
	"strings"
)

// kernelStamp is printk's timestamp on the console: `[    5.123456] `.
var kernelStamp = regexp.MustCompile(`\[\s*\d+\.\d+\] `)

// promptTail returns the line a prompt would be on and its offset in text. That is
// the last line, unless the console ends in kernel messages: the kernel writes to the
// serial console without regard for the tty's column, so a message printed just after a
// prompt lands on the prompt's own line (`/ # [    5.12] tsc: Refined TSC ...`) and
// leaves an empty last line behind it. Then the prompt is what precedes the first
// of those trailing kernel messages: the text before its stamp when the message began
// mid-line, or the line before it when the message began a line. Otherwise a busybox
// boot whose late `tsc:` lines follow its prompt waited the whole WakeupAfter for an
// Enter to draw the prompt again.
func promptTail(text string) (string, int) {
	last := lastLine(text)
	end := len(text) - len(last)
	if last != "" && !isKernelLine(last) {
		return last, end
	}
	// Walk back over the trailing kernel lines (each ends at start-1, a newline); an
	// unterminated kernel line at the very end is one still being printed.
	start := end
	for start > 0 {
		prev := strings.LastIndexByte(text[:start-1], '\n') + 1
		line := text[prev : start-1]
		if isKernelLine(line) {
			start = prev
			continue
		}
		// A prompt with a kernel message written after it on the same line.
		if loc := kernelStamp.FindStringIndex(line); loc != nil && loc[0] > 0 {
			return line[:loc[0]], prev
		}
		if start == end && last == "" {
			// The text ends in a newline that no kernel line explains: no prompt.
			return last, end
		}
		// A kernel message that began its own line after the prompt's.
		return line, prev
	}
	return last, end
}

// isKernelLine says whether a whole line is a printk message (possibly with a syslog
// level prefix such as `<6>`).
func isKernelLine(line string) bool {
	line = strings.TrimLeft(line, " ")
	if strings.HasPrefix(line, "<") {
		if i := strings.IndexByte(line, '>'); i > 0 && i < 4 {
			line = line[i+1:]
		}
	}
	loc := kernelStamp.FindStringIndex(line)
	return loc != nil && loc[0] == 0
}
