package screen

// filter rewrites the byte stream before vt10x sees it, for two gaps in vt10x. It is a
// streaming state machine, so sequences split across writes are handled.
//
// Huge numbers: vt10x parses CSI parameters with strconv.Atoi and then loops that many
// times for some sequences: ESC [ 999999999999999999 I (cursor forward tabulation) would
// keep the console's drain goroutine busy for centuries. Every CSI number is clamped to
// 9999 (no screen is that large, so nothing a real program sends changes), leading zeros
// are removed and signs dropped. The filter mirrors vt10x's own 256-byte limit on a CSI.
//
// Line drawing through G1: vt10x only honours ESC ( 0 (line drawing designated into G0)
// and ignores ESC ) 0 and the shifts SO/SI, which is how terminfo's vt100 entry (and
// programs using enacs/smacs/rmacs with it) draw boxes. The filter tracks the G0 and G1
// designations and turns SO and SI into the ESC ( designation that selects the same
// character set, so TERM=vt100 dialogs render as boxes instead of "lqqqk".
//
// ESC + intermediate + final: vt10x knows ESC ( x and ESC # x; for the others (ESC ) 0,
// ESC * B, ESC % G, ESC SP F ...) it drops the intermediate and prints the final byte, so
// the Debian installer's ESC ) 0 leaves a stray "0" on the screen. The filter rewrites
// each into ESC ( x with x the character set already in use, which changes nothing.
type filter struct {
	st  uint8 // stText, stEsc, stCSI, stG0, stG1
	n   int   // bytes of the CSI passed so far
	sig []byte
	big bool // the pending number exceeds maxParam
	saw bool // a digit is pending

	g0Gfx, g1Gfx, shifted bool
}

const (
	stText = iota
	stEsc
	stCSI
	stG0    // after ESC (
	stG1    // after ESC ) or ESC -
	stOther // after ESC and another intermediate vt10x does not know
)

const (
	maxParam      = "9999"
	vt10xCSILimit = 256
	so            = 0x0e
	si            = 0x0f
)

func designation(gfx bool) []byte {
	if gfx {
		return []byte("\x1b(0")
	}
	return []byte("\x1b(B")
}

// active is the final byte of ESC ( that selects the character set in use now.
func (c *filter) active() byte {
	if c.shifted && c.g1Gfx || !c.shifted && c.g0Gfx {
		return '0'
	}
	return 'B'
}

func (c *filter) filter(p []byte) []byte {
	out := make([]byte, 0, len(p)+len(maxParam))
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch c.st {
		case stText:
			switch b {
			case 0x1b:
				c.st = stEsc
			case so:
				c.shifted = true
				out = append(out, designation(c.g1Gfx)...)
				continue
			case si:
				c.shifted = false
				out = append(out, designation(c.g0Gfx)...)
				continue
			}
			out = append(out, b)
		case stEsc:
			switch b {
			case '[':
				c.st, c.n = stCSI, 0
			case '(':
				c.st = stG0
			case ')', '-':
				c.st = stG1
				out = append(out, '(')
				continue
			case ' ', '!', '"', '$', '%', '&', '\'', '*', '+', ',', '.', '/':
				c.st = stOther
				out = append(out, '(')
				continue
			case 0x1b:
			case 'c': // RIS resets the character sets with everything else
				c.g0Gfx, c.g1Gfx, c.shifted = false, false, false
				c.st = stText
			default:
				c.st = stText
			}
			out = append(out, b)
		case stG0:
			c.st = stText
			c.g0Gfx = b == '0'
			out = append(out, b)
			if c.shifted {
				// G1 is in use: vt10x must keep showing G1's set.
				out = append(out, designation(c.g1Gfx)...)
			}
		case stG1, stOther:
			if b >= 0x20 && b <= 0x2f {
				continue // a further intermediate
			}
			if c.st == stG1 && b >= 0x30 && b <= 0x7e {
				c.g1Gfx = b == '0'
			}
			out = append(out, c.active())
			c.st = stText
			if b < 0x30 || b > 0x7e {
				i-- // not a final byte: the sequence is over, b is processed as text
			}
		case stCSI:
			if b >= '0' && b <= '9' {
				c.saw = true
				switch {
				case b == '0' && len(c.sig) == 0:
					// Leading zeros carry no value; one is written back if nothing follows.
				case len(c.sig) < len(maxParam):
					c.sig = append(c.sig, b)
				default:
					c.big = true
				}
				continue
			}
			out = c.flush(out)
			if b == '-' || b == '+' {
				continue // strconv.Atoi would read a sign; a terminal never sends one
			}
			if b == 0x1b {
				c.st = stEsc
			} else if b >= 0x20 {
				c.n++
				if b <= 0x7e && b >= 0x40 || c.n >= vt10xCSILimit {
					c.st = stText
				}
			}
			out = append(out, b)
		}
	}
	return out
}

// flush appends the pending number, clamped.
func (c *filter) flush(out []byte) []byte {
	if !c.saw {
		return out
	}
	switch {
	case c.big:
		out = append(out, maxParam...)
		c.n += len(maxParam)
	case len(c.sig) > 0:
		out = append(out, c.sig...)
		c.n += len(c.sig)
	default:
		out = append(out, '0')
		c.n++
	}
	c.sig, c.big, c.saw = c.sig[:0], false, false
	return out
}
