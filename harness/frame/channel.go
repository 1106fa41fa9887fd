package frame

import (
	"bytes"
	"errors"
	"regexp"
	"strconv"
	"strings"
)

// The channel protocol runs commands typed on the serial console but carries their
// output on a virtio-serial port that nothing else writes to, once the guest's OS is up;
// ttyS0 stays for typing and for watching the boot (docs/decisions.md, "Framed output
// travels on a virtio-serial channel once root"). The port has no line discipline, no
// kernel printk, no getty and no prompt on it, so the bytes between the markers are
// exactly what the command wrote and no encoding or checksum is needed. That is what
// makes a framed command as cheap as a raw echo: the guest function uses only shell
// builtins, so a builtin command costs no fork at all, where the console protocol pays
// two fork+execs (base64, md5sum), each ~5-13 ms under TCG.
//
// Each command ends with one marker, ASCII RS "E" <id> ":" <status> US, written after
// its output; there is no BEGIN marker, because every write to the port costs a
// virtqueue kick and a completion interrupt (~0.3 ms under TCG, a sixth of a raw echo
// round trip). The host instead starts reading at the channel position it had when it
// typed the command, so bytes that arrived earlier are not output, and drops everything
// up to an END marker of another command (a late END of an interrupted one). The typed
// line never goes to the port (it is typed on the console, with echo off), so it cannot
// satisfy a wait.

// ChannelName is the virtio-serial port name the harness gives QEMU; the guest finds
// the port by it in /sys/class/virtio-ports/*/name.
const ChannelName = "org.bootlab.frame"

// The command itself gets neither: fds 6 and 7 are closed for it (the shell keeps its
// own saved copies), because tools such as LVM complain on stderr about every descriptor
// they inherit ("File descriptor 7 (/dev/vport3p1) leaked on vgs invocation"), which
// then lands in the command's output.
//
// The shell keeps the port open on fd 7: a virtio port can be open only once at a time
// (a second open gets EBUSY), so the shell opens it once and every command writes to
// the inherited descriptor. Fd 6 holds /dev/null for the commands' stdin: opening
// /dev/null per command cost ~0.37 ms under TCG, more than a fifth of a raw echo round
// trip (measured on the mini VM, 80 rounds).

// ChannelFunctions defines __blc (open the port: status 0 done, 1 no such port, 2 no
// device node, 3 the open failed, 4 /dev/null could not be opened) and __blf (run a command with its output on the port),
// for a POSIX shell. `command exec` keeps a failed open from aborting the whole typed
// line (busybox ash and dash unwind to the prompt on a special builtin's error); the
// descriptor is closed first because this shell's own earlier open would make the port
// busy.
const ChannelFunctions = `__blc(){ __bn=$1;for __p in /sys/class/virtio-ports/*;do [ -r "$__p/name" ]||continue;read -r __n <"$__p/name";[ "$__n" = ` + ChannelName + ` ]||continue;[ -c "/dev/${__p##*/}" ]||return 2;exec 7>&-;command exec 7>"/dev/${__p##*/}"||return 3;command exec 6</dev/null||return 4;return 0;done;return 1;};` +
	`__blf(){ eval "$2" >&7 2>&1 <&6 7>&- 6<&-;printf '\036E%s-%s:%d\037' "$__bn" "$1" "$?" >&7;}`

// ChannelConnect is the command (run framed on the console) that opens the port for
// frames with ids nonce-N.
func ChannelConnect(nonce string) string { return "__blc " + nonce }

// ChannelConnectReason explains __blc's exit status.
func ChannelConnectReason(status int) string {
	switch status {
	case 0:
		return "opened"
	case 1:
		return "no virtio-serial port named " + ChannelName + " in /sys/class/virtio-ports (no virtio_console driver, or QEMU was started without the port)"
	case 2:
		return "the port has no device node in /dev (no devtmpfs or udev?)"
	case 3:
		return "opening the port failed (already open elsewhere: a virtio port allows one opener)"
	case 4:
		return "opening /dev/null on fd 6 failed"
	default:
		return "__blc exited with status " + strconv.Itoa(status) + " (the channel functions are not defined?)"
	}
}

// channelEndPrefix starts the END marker; the status digits and US follow.
func channelEndPrefix(id string) []byte { return []byte("\x1eE" + id + ":") }

// anyEnd is the END marker of any command of any shell (ids are nonce-seq).
var anyEnd = regexp.MustCompile(`\x1eE[0-9a-f]{6}-[0-9]+:[0-9]{1,3}\x1f`)

// EncodeChannel produces what __blf writes to the port; the fake guest and the tests
// use it so both sides of the protocol are the same code.
func EncodeChannel(id string, status int, output []byte) []byte {
	b := append(append([]byte(nil), output...), channelEndPrefix(id)...)
	return append(b, []byte(strconv.Itoa(status)+"\x1f")...)
}

// ChannelParser reads one frame from the port's byte stream, fed in arbitrary chunks
// from the position the channel had when the command was typed. Bytes that follow the
// END marker, and bytes up to an earlier command's END marker, are stray bytes.
type ChannelParser struct {
	end    []byte
	exit   []byte // the shell's exit marker prefix (ExitTrap)
	exited int    // the status in the exit marker; -1 until one arrives
	done   bool
	buf    bytes.Buffer
	next   int // where the search for the END marker resumes in buf
	out    []byte
	status int
	stray  int
}

// NewChannelParser waits for the frame with the given id.
func NewChannelParser(id string) *ChannelParser {
	p := &ChannelParser{end: channelEndPrefix(id), exited: -1}
	if i := strings.LastIndexByte(id, '-'); i > 0 {
		p.exit = []byte("\x1eX" + id[:i] + ":")
	}
	return p
}

// Exited reports the status the shell's exit trap wrote on the port, when it did: the
// shell running the command has ended.
func (p *ChannelParser) Exited() (int, bool) { return p.exited, p.exited >= 0 }

// Received is how many bytes of the frame have arrived (partial output while the
// command runs).
func (p *ChannelParser) Received() int { return p.buf.Len() + len(p.out) }

// Done reports whether the END marker has been seen.
func (p *ChannelParser) Done() bool { return p.done }

// Stray is how many bytes arrived that were not this frame's.
func (p *ChannelParser) Stray() int { return p.stray }

// Feed consumes a chunk and reports whether the frame is complete.
func (p *ChannelParser) Feed(chunk []byte) bool {
	if p.done {
		p.stray += len(chunk)
		return true
	}
	p.buf.Write(chunk)
	data := p.buf.Bytes()
	if p.exit != nil && p.exited < 0 && bytes.IndexByte(chunk, 0x1f) >= 0 {
		// Only a chunk holding a US byte can complete the marker (it ends with US).
		if i := bytes.LastIndex(data, p.exit); i >= 0 {
			if st, n, ok := parseStatus(data[i+len(p.exit):]); ok && n > 0 {
				p.exited = st
			}
		}
	}
	for {
		i := bytes.Index(data[p.next:], p.end)
		if i < 0 {
			// A marker split across chunks starts within the last len(end)-1 bytes.
			if n := len(data) - len(p.end) + 1; n > p.next {
				p.next = n
			}
			return false
		}
		i += p.next
		status, n, ok := parseStatus(data[i+len(p.end):])
		switch {
		case ok:
			out := data[:i]
			// Output of an interrupted command, and its late END, is not ours. The RS
			// check spares the usual output, which has no marker byte, a regexp scan.
			if bytes.IndexByte(out, 0x1e) >= 0 {
				if ends := anyEnd.FindAllIndex(out, -1); len(ends) > 0 {
					cut := ends[len(ends)-1][1]
					p.stray += cut
					out = out[cut:]
				}
			}
			p.out = append([]byte{}, out...)
			p.status = status
			p.done = true
			p.stray += len(data) - (i + len(p.end) + n)
			p.buf = bytes.Buffer{}
			return true
		case n < 0:
			p.next = i // the digits have not all arrived yet
			return false
		default:
			p.next = i + 1 // output that merely contains the prefix
		}
	}
}

// parseStatus reads "<1-3 digits>\x1f". n is the bytes consumed; n < 0 means more bytes
// are needed to decide; ok false with n >= 0 means it is not a status.
func parseStatus(b []byte) (status, n int, ok bool) {
	for i := 0; i < len(b) && i <= 3; i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			continue
		case c == 0x1f && i > 0:
			v, err := strconv.Atoi(string(b[:i]))
			if err != nil || v > 255 {
				return 0, 0, false
			}
			return v, i + 1, true
		default:
			return 0, 0, false
		}
	}
	if len(b) <= 3 {
		return 0, -1, false
	}
	return 0, 0, false
}

// Result is the command's exact output and exit status.
func (p *ChannelParser) Result() (output []byte, status int, err error) {
	if !p.done {
		return nil, 0, errors.New("channel frame not complete")
	}
	return p.out, p.status, nil
}
