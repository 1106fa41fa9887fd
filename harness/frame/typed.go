package frame

import (
	"errors"
	"fmt"
	"strings"
)

// Commands reach the guest shell by being typed on its terminal, so every byte typed
// passes a tty line discipline and a line editor before the shell parses it: ^U erases
// the line, ^C interrupts, ^W, ^V, ESC, TAB and DEL edit it, and a canonical-mode line
// past 4095 bytes is cut (dash then hangs). Quoting cannot help there; only what is typed
// can. So every typed line is printable ASCII (0x20-0x7e) ended by one newline and at
// most MaxTypedLine bytes. A command with any other byte is typed as a printf format
// string (`\ooo` octal escapes, `%%`, `\\`) that the printf builtin of the guest shell
// decodes into a variable; a long command is typed in pieces appended to that variable.
// The framing function then runs the variable's value. A short printable command, the
// usual case, is still one line with no extra work.

// MaxTypedLine bounds each typed line, newline included: far below the tty's 4095-byte
// canonical limit and below busybox ash's 1023-byte line editor buffer.
const MaxTypedLine = 1000

// cmdVar is the guest shell variable a long or encoded command is assembled in.
const cmdVar = "__c"

// Printable reports whether s is safe to type as is: printable ASCII only.
func Printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// TypedLines returns the lines to type so that the guest shell runs `fn id CMD` with CMD
// exactly cmd as one argument. Every line is printable ASCII and newline-terminated, and
// no longer than MaxTypedLine. A NUL byte cannot be in a shell word and is refused.
func TypedLines(fn, id, cmd string) ([]string, error) {
	if strings.IndexByte(cmd, 0) >= 0 {
		return nil, errors.New("command contains a NUL byte, which a shell cannot take")
	}
	if !Printable(fn) || !Printable(id) {
		return nil, fmt.Errorf("function %q and frame id %q must be printable", fn, id)
	}
	printable := Printable(cmd)
	if printable {
		line := fn + " " + id + " " + Quote(cmd) + "\n"
		if len(line) <= MaxTypedLine {
			return []string{line}, nil
		}
	}
	payload := cmd
	if !printable {
		payload = printfFormat(cmd)
	}
	lines := []string{cmdVar + "=\n"}
	prefix := cmdVar + "=$" + cmdVar
	room := MaxTypedLine - len(prefix) - len("''\n")
	for len(payload) > 0 {
		// Take as much as fits once quoted (a ' grows to 4 bytes).
		n, size := 0, 0
		for n < len(payload) {
			w := 1
			if payload[n] == '\'' {
				w = 4
			}
			if size+w > room {
				break
			}
			size += w
			n++
		}
		lines = append(lines, prefix+Quote(payload[:n])+"\n")
		payload = payload[n:]
	}
	if !printable {
		// Command substitution drops trailing newlines: the dot keeps them.
		lines = append(lines, cmdVar+"=$(printf \"$"+cmdVar+"\";echo .);"+cmdVar+"=${"+cmdVar+"%.}\n")
	}
	lines = append(lines, fn+" "+id+" \"$"+cmdVar+"\"\n")
	return lines, nil
}

// printfFormat encodes s as a printf format string that prints s: printable bytes stand
// for themselves except the format's own specials (\ and %) and a leading '-' (which
// printf could take for an option); everything else is a three-digit octal escape.
func printfFormat(s string) string {
	var b strings.Builder
	b.Grow(len(s) * 2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '%':
			b.WriteString("%%")
		case c == '-' && i == 0, c < 0x20, c > 0x7e:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// TypedDecoder interprets the lines TypedLines produced as the guest shell would; the
// fake guest uses it so both sides of the encoding are this package's code.
type TypedDecoder struct {
	val string
}

// Line consumes one typed line (without its newline). It reports handled when the line
// belonged to the encoding; for the final invocation line it returns the function, id
// and the decoded command with done set.
func (d *TypedDecoder) Line(l string) (fn, id, cmd string, handled, done bool) {
	prefix := cmdVar + "=$" + cmdVar
	switch {
	case l == cmdVar+"=":
		d.val = ""
		return "", "", "", true, false
	case strings.HasPrefix(l, prefix+"'"):
		d.val += unquoteWord(strings.TrimPrefix(l, prefix))
		return "", "", "", true, false
	case l == cmdVar+"=$(printf \"$"+cmdVar+"\";echo .);"+cmdVar+"=${"+cmdVar+"%.}":
		d.val = decodePrintf(d.val)
		return "", "", "", true, false
	case strings.HasSuffix(l, " \"$"+cmdVar+"\""):
		f := strings.Fields(strings.TrimSuffix(l, " \"$"+cmdVar+"\""))
		if len(f) != 2 {
			return "", "", "", false, false
		}
		return f[0], f[1], d.val, true, true
	}
	return "", "", "", false, false
}

// unquoteWord undoes Quote (a word of '...' pieces joined by \').
func unquoteWord(w string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case c == '\'':
			in = !in
		case !in && c == '\\' && i+1 < len(w):
			i++
			b.WriteByte(w[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// decodePrintf is the part of printf's format decoding that printfFormat uses.
func decodePrintf(f string) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch {
		case c == '%' && i+1 < len(f) && f[i+1] == '%':
			b.WriteByte('%')
			i++
		case c == '\\' && i+1 < len(f) && f[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case c == '\\' && i+3 < len(f):
			var v byte
			for _, d := range f[i+1 : i+4] {
				v = v*8 + byte(d-'0')
			}
			b.WriteByte(v)
			i += 3
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
