package report

import "bytes"

// StripANSI makes console bytes readable: it drops escape sequences (CSI, OSC,
// DCS/APC/PM/SOS strings, charset designations, other two-byte ESC sequences), turns
// CRLF into LF, applies backspaces and drops other C0 controls. It is a whole-buffer
// fallback for a report; the harness's streaming normaliser (which also copes with
// sequences split across reads and 8-bit C1) should be passed as Options.Normalise when
// available. 8-bit C1 is deliberately not handled here: without the stream's state its
// bytes are indistinguishable from UTF-8 continuation bytes.
func StripANSI(in []byte) []byte {
	out := make([]byte, 0, len(in))
	const (
		ground = iota
		esc
		csi
		str     // OSC/DCS/APC/PM/SOS body, until BEL (OSC) or ST
		strEsc  // ESC seen inside a string: ST if followed by '\'
		charset // ESC ( x and friends: one more byte
	)
	state := ground
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch state {
		case ground:
			switch {
			case c == 0x1b:
				state = esc
			case c == '\r':
				if i+1 < len(in) && (in[i+1] == '\n' || in[i+1] == '\r') {
					continue
				}
				// A lone CR redraws the line (progress bars): keep what follows on
				// its own line rather than merging two texts.
				out = append(out, '\n')
			case c == '\b':
				if n := len(out); n > 0 && out[n-1] != '\n' {
					out = out[:n-1]
				}
			case c == '\n' || c == '\t' || c >= 0x20 && c != 0x7f:
				out = append(out, c)
			}
		case esc:
			switch {
			case c == '[':
				state = csi
			case c == ']' || c == 'P' || c == '_' || c == '^' || c == 'X':
				state = str
			case c == '(' || c == ')' || c == '*' || c == '+' || c == '#' || c == '%':
				state = charset
			default:
				state = ground
			}
		case csi:
			if c >= 0x40 && c <= 0x7e {
				state = ground
			}
		case str:
			if c == 0x07 {
				state = ground
			} else if c == 0x1b {
				state = strEsc
			}
		case strEsc:
			if c == '\\' {
				state = ground
			} else if c != 0x1b {
				state = str
			}
		case charset:
			state = ground
		}
	}
	return bytes.ToValidUTF8(out, []byte("\uFFFD"))
}
