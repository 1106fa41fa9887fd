// Package frame is the command framing protocol spoken over a guest's serial console.
//
// Each command runs inside a shell function installed once per shell (GuestFunctions).
// The function prints a BEGIN marker, runs the command with its output in a temporary
// file, prints that file base64-encoded, and prints an END marker carrying the exit
// status and the MD5 of the output. The harness therefore gets exact bytes (binary,
// long lines, CRs, no trailing newline) whatever the terminal does to text, and can
// prove that nothing was lost or injected: kernel messages and console broadcasts that
// land in the middle of the transfer are either spliced out or caught by the checksum,
// in which case the file is sent again (Retransmit).
//
// Markers are printed from two printf arguments ('@@BL' and "B:<id>@@") so the literal
// searched for never appears in the typed command line: an echoed command can never
// satisfy a wait (the worst failure of the Python harness bootlab replaces).
package frame

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The temporary files are named after the shell's pid: with fs.protected_regular (the
// systemd default) root may not open a file that the user's shell left in sticky /tmp,
// so a root shell after `sudo -i` must not reuse the user shell's file.
//
// GuestFunctions defines __bl (run a command), __blt (find another directory for the
// output file) and __blx (send the last output again) in a POSIX shell (bash, dash,
// busybox ash). Only base64 and md5sum are needed, and both are skipped for empty output
// so a silent command costs no fork.
//
// The command runs in a brace group redirected to the output file, which assigns __s
// only if the redirection worked: a missing or read-only /tmp used to abort the whole
// function in dash and busybox ash (`sh: can't create /tmp/.bl.83.o: nonexistent
// directory`) so no END marker ever came. Now __blt tries /dev/shm, /run, /var/tmp and
// /root (or $__bds) and remembers the one that works in __bd; when none does, the frame
// ends at once with an F marker carrying the shell's own error messages, and the
// command has not run.
const GuestFunctions = `__bl(){ __i=$1;__s=r;printf '%s%s\n' '@@BL' "B:$__i@@";__f=${__bd:-${TMPDIR:-/tmp}}/.bl.$$.o;{ eval "$2";__s=$?;} >"$__f" 2>&1 </dev/null;[ "$__s" != r ]||__blt "$2"||{ printf '%s%s\n' '@@BL' "F:$__i:$__e@@";return;};__m=-;if [ -s "$__f" ];then base64 "$__f";__m=$(md5sum <"$__f");__m=${__m%% *};fi;printf '%s%s\n' '@@BL' "E:$__i:$__s:$__m:$__s@@";}` + "\n" +
	`__blt(){ __e=$( : 2>&1 >"$__f");for __d in ${__bds-/dev/shm /run /var/tmp /root};do __f=$__d/.bl.$$.o;{ eval "$1";__s=$?;} >"$__f" 2>&1 </dev/null;[ "$__s" = r ]||{ __bd=$__d;return 0;};__e="$__e; $( : 2>&1 >"$__f")";done;return 1;}` + "\n" +
	`__blx(){ __i=$1;printf '%s%s\n' '@@BL' "B:$__i@@";if [ -s "$__f" ];then base64 "$__f";fi;printf '%s%s\n' '@@BL' "E:$__i:$__s:$__m:$__s@@";}`

// ExitTrap makes the shell say that it exits, with its status, so a command that ends
// the shell (`exit 3`) is reported at once instead of after the command's timeout: on
// the controlling terminal (the console) as @@BLX:<status>@@, and on the frame channel as
// RS "X" <nonce> ":" <status> US when the port is open on fd 7 (bash has closed fd 7
// while running a __blf command, so there only the console marker comes). Subshells do
// not inherit the trap, so `( exit 3 )` stays a command that fails. Nothing traps
// SIGKILL or exec; the shell package also watches for the parent's prompt.
const ExitTrap = `trap '__x=$?;printf "%s%s\n" @@BL "X:$__x@@" 2>/dev/null >/dev/tty;printf "\036X%s:%d\037" "$__bn" "$__x" 2>/dev/null >&7' EXIT`

// ExitMarker finds the console marker ExitTrap prints; group 1 is the shell's status.
var ExitMarker = regexp.MustCompile(`@@BLX:([0-9]{1,3})@@`)

// Invocation is the line typed to run cmd as frame id.
func Invocation(id, cmd string) string {
	return "__bl " + id + " " + Quote(cmd) + "\n"
}

// Retransmit is the line typed to have the last output sent again under a new id.
func Retransmit(id string) string {
	return "__blx " + id + "\n"
}

// Quote makes s a single shell word.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Encode produces what the guest function prints for a command; the fake guest and the
// tests use it so both sides of the protocol are the same code.
func Encode(id string, status int, output []byte) []byte {
	var b bytes.Buffer
	b.WriteString(BeginMarker(id) + "\n")
	sum := "-"
	if len(output) > 0 {
		enc := base64.StdEncoding.EncodeToString(output)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\n")
		h := md5.Sum(output)
		sum = hex.EncodeToString(h[:])
	}
	fmt.Fprintf(&b, "@@BLE:%s:%d:%s:%d@@\n", id, status, sum, status)
	return b.Bytes()
}

// BeginMarker is the text the guest prints before a command's output.
func BeginMarker(id string) string { return "@@BLB:" + id + "@@" }

// SetupError is a frame that could not run its command at all: the guest shell found no
// directory to write the output file in. Guest holds the shell's own error messages.
type SetupError struct{ Guest string }

func (e *SetupError) Error() string {
	return "the guest shell could not run the framed command: no writable directory for its output file (tried $TMPDIR or /tmp, /dev/shm, /run, /var/tmp, /root); the shell said: " + e.Guest
}

// ErrCorrupt means the payload did not match its checksum: something wrote to the
// console in the middle of the transfer in a way that could not be spliced out.
var ErrCorrupt = errors.New("framed output failed its checksum")

// kernelLine finds a printk line (`[   12.345678] text`) on a console line. The kernel
// writes straight to the UART, so its lines can start in the middle of ours.
var kernelLine = regexp.MustCompile(`\[ *[0-9]+\.[0-9]+\] `)

// Parser reads one frame from the normalised console stream, fed in arbitrary chunks.
type Parser struct {
	id      string
	end     *regexp.Regexp
	fail    string // the F marker's prefix
	failure *SetupError
	begin   string
	partial []byte // an incomplete line
	prefix  []byte // start of a line that a kernel message interrupted
	inside  bool
	done    bool
	payload bytes.Buffer
	noise   []string
	status  int
	sum     string
}

// NewParser waits for the frame with the given id; frames with other ids are ignored.
func NewParser(id string) *Parser {
	return &Parser{
		id:    id,
		begin: BeginMarker(id),
		fail:  "@@BLF:" + id + ":",
		end:   regexp.MustCompile(`@@BLE:` + regexp.QuoteMeta(id) + `:([0-9]{1,3}):([0-9a-f]{32}|-):([0-9]{1,3})@@`),
	}
}

// Started reports whether the BEGIN marker has been seen (the guest shell is running
// the command, so it is alive and in sync).
func (p *Parser) Started() bool { return p.inside || p.done }

// Done reports whether the END marker has been seen.
func (p *Parser) Done() bool { return p.done }

// Noise returns the console lines that arrived inside the frame but were not part of it.
func (p *Parser) Noise() []string { return p.noise }

// Feed consumes a chunk and reports whether the frame is complete.
func (p *Parser) Feed(chunk []byte) bool {
	if p.done {
		return true
	}
	data := append(p.partial, chunk...)
	for !p.done {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			break
		}
		p.line(data[:nl])
		data = data[nl+1:]
	}
	p.partial = append(p.partial[:0:0], data...)
	return p.done
}

func (p *Parser) line(l []byte) {
	l = bytes.TrimRight(l, "\r")
	if len(l) == 0 {
		// Blank lines carry nothing; the line a kernel message interrupted continues on
		// the next line that has text (a terminal may add blank lines around printk).
		return
	}
	if len(p.prefix) > 0 {
		l = append(append([]byte(nil), p.prefix...), l...)
		p.prefix = nil
	}
	if loc := kernelLine.FindIndex(l); loc != nil {
		p.noise = append(p.noise, string(l[loc[0]:]))
		p.prefix = append([]byte(nil), l[:loc[0]]...)
		if p.end.Match(p.prefix) {
			// The interrupted line was already complete: nothing continues it.
			pre := p.prefix
			p.prefix = nil
			p.line(pre)
		}
		return
	}
	if !p.inside {
		if bytes.Contains(l, []byte(p.begin)) {
			p.inside = true
		}
		return
	}
	if i := bytes.Index(l, []byte(p.fail)); i >= 0 && bytes.HasSuffix(l, []byte("@@")) && len(l) >= i+len(p.fail)+2 {
		p.failure = &SetupError{Guest: string(l[i+len(p.fail) : len(l)-2])}
		p.done = true
		return
	}
	if loc := p.end.FindSubmatchIndex(l); loc != nil {
		// Text before the marker is the tail of a payload line that a kernel message
		// split off from its newline.
		if before := l[:loc[0]]; isBase64(before) {
			p.payload.Write(before)
		} else if len(before) > 0 {
			p.noise = append(p.noise, string(before))
		}
		p.finish([][]byte{nil, l[loc[2]:loc[3]], l[loc[4]:loc[5]], l[loc[6]:loc[7]]})
		return
	}
	if isBase64(l) {
		p.payload.Write(l)
		return
	}
	p.noise = append(p.noise, string(l))
}

func (p *Parser) finish(m [][]byte) {
	// The status is printed on both sides of the checksum, which covers only the
	// output: noise landing inside the marker cannot change both copies alike.
	if !bytes.Equal(m[1], m[3]) {
		return
	}
	p.status, _ = strconv.Atoi(string(m[1]))
	p.sum = string(m[2])
	p.done = true
}

func isBase64(l []byte) bool {
	if len(l) == 0 {
		return false
	}
	for _, c := range l {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
		default:
			return false
		}
	}
	return true
}

// Result decodes the payload and checks it. It fails with ErrCorrupt when the checksum
// does not match, in which case a retransmission can recover the output.
func (p *Parser) Result() (output []byte, status int, err error) {
	if !p.done {
		return nil, 0, errors.New("frame not complete")
	}
	if p.failure != nil {
		return nil, 0, p.failure
	}
	if p.sum == "-" {
		if p.payload.Len() != 0 {
			return nil, p.status, fmt.Errorf("%w: payload present but the guest reported no output (noise: %q)", ErrCorrupt, p.noise)
		}
		return []byte{}, p.status, nil
	}
	out, derr := base64.StdEncoding.DecodeString(p.payload.String())
	h := md5.Sum(out)
	if derr != nil || hex.EncodeToString(h[:]) != p.sum {
		return nil, p.status, fmt.Errorf("%w (%d encoded bytes; console noise inside the frame: %q)", ErrCorrupt, p.payload.Len(), p.noise)
	}
	return out, p.status, nil
}
