package screen

// clamp rewrites CSI numeric parameters above maxParam to maxParam before they reach
// vt10x, which parses them with strconv.Atoi and then loops that many times for some
// sequences: ESC [ 999999999999999999 I (cursor forward tabulation) would keep the
// console's drain goroutine busy for centuries. No screen is that large, so nothing a
// real program sends changes. It is a streaming filter (sequences split across writes are
// handled), and it mirrors vt10x's own 256-byte limit on a CSI.
type clamp struct {
	st  uint8 // 0 text, 1 after ESC, 2 inside CSI
	n   int   // bytes of the CSI passed so far
	sig []byte
	big bool // the pending number exceeds maxParam
	saw bool // a digit is pending
}

const (
	maxParam      = "9999"
	vt10xCSILimit = 256
)

func (c *clamp) filter(p []byte) []byte {
	out := make([]byte, 0, len(p)+len(maxParam))
	for _, b := range p {
		switch c.st {
		case 0:
			if b == 0x1b {
				c.st = 1
			}
			out = append(out, b)
		case 1:
			switch b {
			case '[':
				c.st, c.n = 2, 0
			case 0x1b:
			default:
				c.st = 0
			}
			out = append(out, b)
		case 2:
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
				c.st = 1
			} else if b >= 0x20 {
				c.n++
				if b <= 0x7e && b >= 0x40 || c.n >= vt10xCSILimit {
					c.st = 0
				}
			}
			out = append(out, b)
		}
	}
	return out
}

// flush appends the pending number, clamped.
func (c *clamp) flush(out []byte) []byte {
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
