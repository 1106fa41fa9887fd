package shell

import (
	"regexp"
	"strings"
)

// shellRejection matches a shell's diagnostic about the line the harness typed: the
// framing function (__bl, __blf) or a piece of a long command typed in parts (`__c=...`,
// frame.TypedLines) not found because something was glued to its front, or a syntax
// error. busybox ash says `sh: 1R__bl: not found` and `sh: syntax error:
// unterminated quoted string`, dash `sh: 1: 1R__bl: not found` and `sh: 1: Syntax
// error: ...`, bash `-bash: 1R__bl: command not found` and `-bash: syntax error near
// unexpected token`. Echo is off, so the diagnostic usually follows the prompt on its
// line. A command's own output can never match: it travels inside the frame (base64 on
// the console, on the channel otherwise), after the BEGIN marker, and the scan stops
// there.
var shellRejection = regexp.MustCompile(`(?:^|[\s$#>])-?(?:ba|da|a)?sh(?:: line [0-9]+|: [0-9]+)?: (?:\S*(?:__blf?(?:\s|:)|__c=)[^\n]*|[^\n]*[Ss]yntax error[^\n]*)`)

// rejection watches the console text that comes before a command's frame starts.
type rejection struct {
	text strings.Builder
}

// feed adds console text and returns the shell's words if it rejected the line. Only
// whole lines count: the diagnostic is complete once its newline arrives.
func (r *rejection) feed(p []byte) string {
	if r.text.Len() > 64<<10 {
		return ""
	}
	r.text.Write(p)
	s := r.text.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return ""
	}
	var words []string
	for _, m := range shellRejection.FindAllString(s, -1) {
		words = append(words, strings.TrimSpace(strings.TrimLeft(m, " \t$#>")))
	}
	return strings.Join(words, "; ")
}
