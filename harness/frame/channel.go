package frame

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// The channel protocol runs commands typed on the serial console but carries their
// output on a virtio-serial port that nothing else writes to (DESIGN.md section 9 and
// spec/anchors.md: "prefer a virtio-serial port once the OS is up; keep ttyS0 for
// observation"). The port has no line discipline, no kernel printk, no getty and no
// prompt on it, so the bytes between the markers are exactly what the command wrote and
// no encoding or checksum is needed. That is what makes a framed command as cheap as a
// raw echo: the guest function uses only shell builtins, so a builtin command costs no
// fork at all, where the console protocol pays two fork+execs (base64, md5sum), each
// ~5-13 ms under TCG.
//
// The markers are ASCII RS ... US around a per-command id. The typed line never goes to
// the port (it is typed on the console, with echo off), so it cannot satisfy a wait.

// ChannelName is the virtio-serial port name the harness gives QEMU; the guest finds
// the port by it in /sys/class/virtio-ports/*/name.
const ChannelName = "org.bootlab.frame"

// ChannelFD is the shell file descriptor the port is kept open on. A virtio port can be
// open only once at a time (a second open gets EBUSY), so the shell opens it once and
// every command writes to the inherited descriptor.
const ChannelFD = 7

// ChannelFunctions defines __blc (open the port: status 0 done, 1 no such port, 2 no
// device node, 3 the open failed) and __blf (run a command with its output on the port),
// for a POSIX shell. `command exec` keeps a failed open from aborting the whole typed
// line (busybox ash and dash unwind to the prompt on a special builtin's error); the
// descriptor is closed first because this shell's own earlier open would make the port
// busy.
const ChannelFunctions = `__blc(){ for __p in /sys/class/virtio-ports/*;do [ -r "$__p/name" ]||continue;read -r __n <"$__p/name";[ "$__n" = ` + ChannelName + ` ]||continue;[ -c "/dev/${__p##*/}" ]||return 2;exec 7>&-;command exec 7>"/dev/${__p##*/}"||return 3;return 0;done;return 1;};` +
	`__blf(){ printf '\036B%s\037' "$1" >&7;eval "$2" >&7 2>&1 </dev/null;__s=$?;printf '\036E%s:%d\037' "$1" "$__s" >&7;}`

// ChannelInvocation is the line typed to run cmd as frame id on the channel.
func ChannelInvocation(id, cmd string) string {
	return "__blf " + id + " " + Quote(cmd) + "\n"
}

// ChannelConnect is the command (run framed on the console) that opens the port.
const ChannelConnect = "__blc"

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
	default:
		return "__blc exited with status " + strconv.Itoa(status) + " (the channel functions are not defined?)"
	}
}

// ChannelBegin is what the guest writes to the port before a command's output.
func ChannelBegin(id string) []byte { return []byte("\x1eB" + id + "\x1f") }

// channelEndPrefix starts the END marker; the status digits and US follow.
func channelEndPrefix(id string) []byte { return []byte("\x1eE" + id + ":") }

// EncodeChannel produces what __blf writes to the port; the fake guest and the tests
// use it so both sides of the protocol are the same code.
func EncodeChannel(id string, status int, output []byte) []byte {
	b := append(ChannelBegin(id), output...)
	return append(append(b, channelEndPrefix(id)...), []byte(strconv.Itoa(status)+"\x1f")...)
}

// ChannelParser reads one frame from the port's byte stream, fed in arbitrary chunks.
// Bytes outside the frame (a late frame of an interrupted command, output of a
// background job that inherited the port) are set aside as stray bytes.
type ChannelParser struct {
	begin, end []byte
	pre        []byte // bytes before the BEGIN marker (kept only as long as it can match)
	stray      int
	inside     bool
	done       bool
	buf        bytes.Buffer
	next       int // where the search for the END marker resumes in buf
	out        []byte
	status     int
	after      int // bytes that followed the END marker in the last chunk
}

// NewChannelParser waits for the frame with the given id; frames with other ids are
// stray bytes.
func NewChannelParser(id string) *ChannelParser {
	return &ChannelParser{begin: ChannelBegin(id), end: channelEndPrefix(id)}
}

// Started reports whether the BEGIN marker has been seen.
func (p *ChannelParser) Started() bool { return p.inside || p.done }

// Done reports whether the END marker has been seen.
func (p *ChannelParser) Done() bool { return p.done }

// Stray is how many bytes arrived outside the frame (before BEGIN or after END).
func (p *ChannelParser) Stray() int { return p.stray + p.after }

// Feed consumes a chunk and reports whether the frame is complete.
func (p *ChannelParser) Feed(chunk []byte) bool {
	if p.done {
		p.after += len(chunk)
		return true
	}
	if !p.inside {
		p.pre = append(p.pre, chunk...)
		i := bytes.Index(p.pre, p.begin)
		if i < 0 {
			// Keep only what could still be the start of a split marker.
			if keep := len(p.begin) - 1; len(p.pre) > keep {
				p.stray += len(p.pre) - keep
				p.pre = append(p.pre[:0], p.pre[len(p.pre)-keep:]...)
			}
			return false
		}
		p.stray += i
		chunk = p.pre[i+len(p.begin):]
		p.pre = nil
		p.inside = true
	}
	p.buf.Write(chunk)
	data := p.buf.Bytes()
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
			p.out = append([]byte(nil), data[:i]...)
			p.status = status
			p.done = true
			p.after = len(data) - (i + len(p.end) + n)
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
	if p.out == nil {
		p.out = []byte{}
	}
	return p.out, p.status, nil
}

// String describes the parser's state for timeout errors.
func (p *ChannelParser) String() string {
	return fmt.Sprintf("channel frame: started=%v done=%v payload=%d stray=%d", p.Started(), p.done, p.buf.Len(), p.Stray())
}
