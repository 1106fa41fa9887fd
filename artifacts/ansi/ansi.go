// Package ansi turns the raw byte stream of a serial console into plain text that
// patterns can be matched against.
//
// It lives in artifacts, not harness, because the report (artifacts/report) renders
// serial logs with it and the arrows run harness -> artifacts: one normaliser for the
// live console and for the page.
//
// It is a streaming ECMA-48 state machine rather than a regular expression because a
// console is read in arbitrary chunks: an escape sequence, a CR LF pair or a multi-byte
// UTF-8 character can be split at any byte, and a regex applied per chunk either leaks the
// tail of the sequence or needs ad-hoc hold-back heuristics. acarl005/stripansi, the
// obvious alternative, also corrupts OSC window titles (it eats the first letter of the
// title text) and leaks DCS payloads and several CSI finals; the tests pin those cases.
//
// Decisions (docs/console.md explains them at more length):
//
//   - Every escape family is removed: CSI (7-bit ESC [ and 8-bit 0x9B, any parameters,
//     private markers and intermediates, every final byte 0x40-0x7E), OSC (ended by BEL, by
//     ESC \ or by an 8-bit ST), DCS, SOS, PM and APC (ended by ESC \ or 8-bit ST),
//     two-byte ESC sequences and ESC + intermediates + final (charset designation
//     ESC ( 0, ESC # 8, ESC % G, ...).
//   - CAN and SUB abort a sequence; ESC inside a sequence abandons it and starts a new one,
//     as a VT100 does. C0 controls inside CSI and ESC sequences are executed, also as a
//     VT100 does, so a newline inside a broken sequence is not lost.
//   - A sequence longer than MaxSequence bytes (default 4 KiB) is abandoned and the
//     parser returns to text, so an unterminated OSC cannot swallow the stream.
//   - UTF-8 vs 8-bit C1: a byte 0x80-0x9F is a UTF-8 continuation byte only when it
//     extends a well-formed UTF-8 sequence (Unicode table 3-7); anywhere else it is a C1
//     control. The code points U+0080-U+009F, even well-formed, are C1 controls too. So
//     valid UTF-8 text passes through untouched, and the output is always valid UTF-8
//     that contains neither ESC nor a C1 control. Bytes that are neither (a stray
//     continuation byte 0xA0-0xBF, 0xC0, 0xC1, 0xF5-0xFF, a truncated sequence) are line
//     noise or a legacy code page and are dropped.
//   - Inside a string (OSC, DCS...) the parser keeps decoding UTF-8, so a 0x9C that is
//     the continuation byte of a character in a window title does not end the title
//     early; a 0x9C anywhere else is ST.
//   - Line endings: CR LF, CR CR LF (guest CR LF plus host onlcr) and any run of CRs
//     before LF become one LF. A lone CR (a progress bar or a systemd status line being
//     redrawn) becomes LF: every redrawn state becomes its own line, so line-anchored
//     patterns keep working and no text is glued to the previous state. Emulating the
//     overwrite is not possible in a stream that has already handed the earlier text
//     out; screen mode (package screen) is the place for that.
//   - Backspace, BEL, DEL and the other C0 controls except LF and TAB are dropped. Backspace
//     is not applied as an erase because the character it would erase may belong to an
//     earlier chunk already handed out, and erasing only within a chunk would make the
//     output depend on where reads happened to split.
//   - Terminal queries the guest expects answered (CSI 6 n and friends) are reported
//     through OnEvent, synchronously, so the caller can answer them.
package ansi

// DefaultMaxSequence bounds the bytes an unterminated escape sequence may swallow.
const DefaultMaxSequence = 4096

// EventKind says what the guest asked for or what went wrong.
type EventKind uint8

const (
	// CursorPositionQuery is DSR 6 (CSI 6 n); a terminal answers CSI row ; col R.
	CursorPositionQuery EventKind = iota + 1
	// DECCursorPositionQuery is DECXCPR (CSI ? 6 n); the answer is CSI ? row ; col ; 1 R.
	DECCursorPositionQuery
	// StatusQuery is DSR 5 (CSI 5 n); the answer is CSI 0 n (terminal OK).
	StatusQuery
	// DeviceAttributesQuery is primary DA (CSI c or CSI 0 c).
	DeviceAttributesQuery
	// Overflow reports a sequence abandoned after MaxSequence bytes without a terminator.
	Overflow
)

func (k EventKind) String() string {
	switch k {
	case CursorPositionQuery:
		return "cursor-position-query"
	case DECCursorPositionQuery:
		return "dec-cursor-position-query"
	case StatusQuery:
		return "status-query"
	case DeviceAttributesQuery:
		return "device-attributes-query"
	case Overflow:
		return "overflow"
	}
	return "unknown"
}

// Event is a notable sequence seen in the stream.
type Event struct {
	Kind EventKind
	// In is the offset in the raw input just after the sequence's last byte, so the event
	// can be located in serial.log.
	In int64
	// Out is the length of normalised text produced before the event.
	Out int64
}

// Reply is what a terminal would answer to a query, given the cursor position (1-based);
// nil for events that need no answer. For a serial line with no real screen, (24, 80) is
// a sensible position: programs that probe the size by moving to (9999, 9999) and asking
// for the position then learn 80x24.
func (e Event) Reply(row, col int) []byte {
	switch e.Kind {
	case CursorPositionQuery:
		return []byte("\x1b[" + itoa(row) + ";" + itoa(col) + "R")
	case DECCursorPositionQuery:
		return []byte("\x1b[?" + itoa(row) + ";" + itoa(col) + ";1R")
	case StatusQuery:
		return []byte("\x1b[0n")
	case DeviceAttributesQuery:
		// VT102: what QEMU's own vc and many serial terminals claim.
		return []byte("\x1b[?6c")
	}
	return nil
}

func itoa(v int) string {
	if v <= 0 {
		return "1"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}

type state uint8

const (
	stGround    state = iota
	stEsc             // after ESC
	stEscInter        // ESC + intermediates (0x20-0x2F), waiting for a final 0x30-0x7E
	stCSI             // parameters and intermediates, waiting for a final 0x40-0x7E
	stString          // OSC/DCS/SOS/PM/APC payload, waiting for ST (or BEL for OSC)
	stStringEsc       // ESC inside a string: ESC \ ends it, anything else starts over
)

const (
	bel = 0x07
	bs  = 0x08
	tab = 0x09
	lf  = 0x0a
	cr  = 0x0d
	can = 0x18
	sub = 0x1a
	esc = 0x1b
	del = 0x7f
)

// Normalizer is the streaming state machine. The zero value is ready to use. It is not
// safe for concurrent use: the console feeds it from its one drain goroutine.
type Normalizer struct {
	// OnEvent, if set, is called from inside Write for every query and overflow.
	OnEvent func(Event)
	// MaxSequence bounds an unterminated sequence; zero means DefaultMaxSequence.
	MaxSequence int

	st        state
	isOSC     bool // the current string may also end with BEL
	seqLen    int
	params    [8]byte // leading CSI parameter bytes, enough to recognise queries
	nparams   int
	inter     bool // the CSI has intermediate bytes (so it is not a query)
	pendingCR bool // CRs seen since the last text; they become one LF

	// UTF-8 sequence being assembled (in text) or tracked (inside a string).
	ubuf  [4]byte
	un    int // bytes held
	uneed int // total length of the sequence being held

	in, out int64
	dst     []byte // output of the current Write
}

// Strip normalises a complete string in one go.
func Strip(s string) string {
	return string(Normalize([]byte(s)))
}

// Normalize normalises a complete buffer in one go (a report's serial tail, a capture):
// the same machine as the stream, flushed at the end.
func Normalize(b []byte) []byte {
	var n Normalizer
	return append(n.Write(b), n.Flush()...)
}

// Write consumes a chunk and returns the text it completes. The returned slice is newly
// allocated and belongs to the caller. A few bytes may be held back until the next call:
// a CR (is LF next?) and an incomplete UTF-8 character.
func (n *Normalizer) Write(p []byte) []byte {
	return n.Append(make([]byte, 0, len(p)+1), p)
}

// Append is Write appending to dst, for callers that reuse a buffer; the output for p
// is never longer than len(p)+1 bytes (the +1 is a CR held from the previous call).
func (n *Normalizer) Append(dst, p []byte) []byte {
	n.dst = dst
	for i := 0; i < len(p); {
		if n.st == stGround && n.un == 0 {
			// Fast path: copy a run of plain text in one go.
			j := i
			for j < len(p) && plain(p[j]) {
				j++
			}
			if j > i {
				if n.pendingCR {
					n.pendingCR = false
					if p[i] != lf {
						n.dst = append(n.dst, lf)
						n.out++
					}
				}
				n.dst = append(n.dst, p[i:j]...)
				n.out += int64(j - i)
				n.in += int64(j - i)
				i = j
				continue
			}
		}
		n.in++
		n.step(p[i])
		i++
	}
	out := n.dst
	n.dst = nil
	return out
}

// Flush ends the stream: a held CR is emitted as LF, an incomplete UTF-8 character and an
// unterminated sequence are dropped, and the parser returns to its initial state.
func (n *Normalizer) Flush() []byte {
	n.dst = nil
	if n.un > 0 && n.st == stGround {
		held := n.ubuf
		cnt := n.un
		n.un = 0
		for _, h := range held[1:cnt] {
			n.step(h)
		}
	}
	n.st, n.un, n.seqLen = stGround, 0, 0
	if n.pendingCR {
		n.pendingCR = false
		n.emit(lf)
	}
	out := n.dst
	n.dst = nil
	return out
}

func plain(b byte) bool { return (b >= 0x20 && b < 0x7f) || b == lf || b == tab }

func (n *Normalizer) emit(b byte) {
	if b == lf {
		n.pendingCR = false
	} else if n.pendingCR {
		n.pendingCR = false
		n.dst = append(n.dst, lf)
		n.out++
	}
	n.dst = append(n.dst, b)
	n.out++
}

func (n *Normalizer) emitRune(b []byte) {
	if n.pendingCR {
		n.pendingCR = false
		n.dst = append(n.dst, lf)
		n.out++
	}
	n.dst = append(n.dst, b...)
	n.out += int64(len(b))
}

func (n *Normalizer) event(k EventKind) {
	if n.OnEvent != nil {
		n.OnEvent(Event{Kind: k, In: n.in, Out: n.out})
	}
}

func (n *Normalizer) enter(s state) {
	n.st = s
	n.seqLen = 0
	n.nparams = 0
	n.inter = false
	n.un = 0
}

// execute performs a C0 control met in text or inside a CSI or ESC sequence.
func (n *Normalizer) execute(b byte) {
	switch b {
	case lf, tab:
		n.emit(b)
	case cr:
		n.pendingCR = true
	}
	// BEL, BS and the rest: dropped (see the package comment).
}

// seqLimit abandons an over-long sequence.
func (n *Normalizer) seqLimit() {
	n.seqLen++
	max := n.MaxSequence
	if max <= 0 {
		max = DefaultMaxSequence
	}
	if n.seqLen <= max {
		return
	}
	n.enter(stGround)
	n.event(Overflow)
}

func (n *Normalizer) step(b byte) {
	if n.st != stGround {
		// After an overflow the parser is back in text and b is processed as text.
		n.seqLimit()
	}
	switch n.st {
	case stGround:
		n.ground(b)
	case stEsc:
		n.escByte(b)
	case stEscInter:
		switch {
		case b >= 0x20 && b <= 0x2f:
		case b >= 0x30 && b <= 0x7e:
			n.enter(stGround)
		default:
			n.control(b)
		}
	case stCSI:
		switch {
		case b >= 0x30 && b <= 0x3f:
			if !n.inter && n.nparams < len(n.params) {
				n.params[n.nparams] = b
			}
			n.nparams++
		case b >= 0x20 && b <= 0x2f:
			n.inter = true
		case b >= 0x40 && b <= 0x7e:
			n.csiFinal(b)
			n.enter(stGround)
		default:
			n.control(b)
		}
	case stString:
		n.stringByte(b)
	case stStringEsc:
		if b == '\\' {
			n.enter(stGround)
			return
		}
		// ESC not followed by \ abandons the string and starts a new sequence.
		n.enter(stEsc)
		n.escByte(b)
	}
}

// control handles a byte that cannot continue the current CSI or ESC sequence.
func (n *Normalizer) control(b byte) {
	switch {
	case b == esc:
		n.enter(stEsc)
	case b == can || b == sub:
		n.enter(stGround)
	case b < 0x20:
		n.execute(b)
	case b == del:
		// Ignored inside sequences, as a VT100 does.
	default:
		// A byte >= 0x80 cannot be part of a 7-bit sequence: abandon the sequence and
		// treat the byte as text (it may be a C1 introducer or start a character).
		n.enter(stGround)
		n.ground(b)
	}
}

func (n *Normalizer) escByte(b byte) {
	switch {
	case b == '[':
		n.enter(stCSI)
	case b == ']':
		n.enterString(true)
	case b == 'P' || b == 'X' || b == '^' || b == '_':
		n.enterString(false)
	case b >= 0x20 && b <= 0x2f:
		n.st = stEscInter
	case b >= 0x30 && b <= 0x7e:
		// Two-byte sequence (ESC 7, ESC =, ESC c, ESC M, a stray ESC \ ...): done.
		n.enter(stGround)
	default:
		n.control(b)
	}
}

func (n *Normalizer) enterString(osc bool) {
	n.enter(stString)
	n.isOSC = osc
}

func (n *Normalizer) stringByte(b byte) {
	if n.un > 0 {
		if continues(n.ubuf[0], n.un, b) {
			n.un++
			if n.un == n.uneed {
				n.un = 0
			}
			return
		}
		n.un = 0
	}
	switch {
	case b == bel && n.isOSC:
		n.enter(stGround)
	case b == esc:
		n.st = stStringEsc
	case b == can || b == sub:
		n.enter(stGround)
	case b == 0x9c:
		// 8-bit ST; only reached when the byte does not continue a UTF-8 character.
		n.enter(stGround)
	default:
		if l := leadLen(b); l > 0 {
			n.ubuf[0], n.un, n.uneed = b, 1, l
		}
	}
}

func (n *Normalizer) csiFinal(final byte) {
	if n.inter || n.nparams > len(n.params) {
		return
	}
	p := string(n.params[:n.nparams])
	switch {
	case final == 'n' && p == "6":
		n.event(CursorPositionQuery)
	case final == 'n' && p == "?6":
		n.event(DECCursorPositionQuery)
	case final == 'n' && p == "5":
		n.event(StatusQuery)
	case final == 'c' && (p == "" || p == "0"):
		n.event(DeviceAttributesQuery)
	}
}

func (n *Normalizer) ground(b byte) {
	if n.un > 0 {
		if continues(n.ubuf[0], n.un, b) {
			n.ubuf[n.un] = b
			n.un++
			if n.un == n.uneed {
				cnt := n.un
				n.un = 0
				if cnt == 2 && n.ubuf[0] == 0xc2 && n.ubuf[1] <= 0x9f {
					// U+0080-U+009F: a C1 control spelt in UTF-8.
					n.c1(n.ubuf[1])
					return
				}
				n.emitRune(n.ubuf[:cnt])
			}
			return
		}
		// The held bytes are not a character. The lead byte is noise; its continuation
		// bytes are reconsidered one by one (0x80-0x9F among them are C1 controls), then b.
		held := n.ubuf
		cnt := n.un
		n.un = 0
		for _, h := range held[1:cnt] {
			n.step(h)
		}
		n.step(b)
		return
	}
	switch {
	case b == esc:
		n.enter(stEsc)
	case b == cr:
		n.pendingCR = true
	case b < 0x20:
		n.execute(b)
	case b < 0x7f:
		n.emit(b)
	case b == del:
	case b <= 0x9f:
		n.c1(b)
	default:
		if l := leadLen(b); l > 0 {
			n.ubuf[0], n.un, n.uneed = b, 1, l
		}
		// Otherwise not UTF-8: dropped.
	}
}

// c1 handles an 8-bit control 0x80-0x9F.
func (n *Normalizer) c1(b byte) {
	switch b {
	case 0x9b:
		n.enter(stCSI)
	case 0x9d:
		n.enterString(true)
	case 0x90, 0x98, 0x9e, 0x9f:
		n.enterString(false)
	}
	// The other C1 controls (IND, NEL, RI, SS2, ST...) are dropped.
}

// leadLen is the length of the UTF-8 sequence b starts, or 0 if b cannot start one.
func leadLen(b byte) int {
	switch {
	case b >= 0xc2 && b <= 0xdf:
		return 2
	case b >= 0xe0 && b <= 0xef:
		return 3
	case b >= 0xf0 && b <= 0xf4:
		return 4
	}
	return 0
}

// continues reports whether b may follow the held bytes of a sequence started by lead
// (held counts the bytes held so far, lead included), per Unicode table 3-7, which also
// rules out overlong forms and surrogates.
func continues(lead byte, held int, b byte) bool {
	lo, hi := byte(0x80), byte(0xbf)
	if held == 1 {
		switch lead {
		case 0xe0:
			lo = 0xa0
		case 0xed:
			hi = 0x9f
		case 0xf0:
			lo = 0x90
		case 0xf4:
			hi = 0x8f
		}
	}
	return b >= lo && b <= hi
}
