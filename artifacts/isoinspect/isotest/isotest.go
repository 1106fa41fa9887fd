// Package isotest writes ISO9660 images byte by byte for tests, so that a test can
// say things no honest mastering tool would: sizes larger than the image, directories
// and path tables that loop, boot catalogs that claim more than they hold. The bounded
// reader's own tests (artifacts/isoinspect), the boot menu's, bisect's and the bootlab
// command's use it.
package isotest

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf16"
)

// Sector is the ISO9660 logical block size the images use.
const Sector = 2048

// Builder holds an image being written: the system area, the volume descriptors from
// sector 16 (the primary first, then room for others, then the terminator), the root
// directory's sector (Root) and whatever Alloc added after it.
type Builder struct {
	Img  []byte
	Root uint32
	vds  int
}

// New starts an image with a primary volume descriptor only (the root at sector 18).
func New(label string) *Builder { return NewWithVDs(label, 1) }

// NewWithVDs leaves room for n descriptors, the primary first, before the
// terminator; the others are zero until Joliet or ElTorito fills them.
func NewWithVDs(label string, n int) *Builder {
	root := 16 + n + 1
	b := &Builder{Img: make([]byte, (root+1)*Sector), Root: uint32(root), vds: n}
	pvd := b.VD(0)
	pvd[0], pvd[6] = 1, 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:72], bytes.Repeat([]byte(" "), 32))
	copy(pvd[40:], label)
	binary.LittleEndian.PutUint16(pvd[128:], Sector)
	binary.BigEndian.PutUint16(pvd[130:], Sector)
	// The four dates "not specified", as mastering tools write them (digits, not
	// zero bytes: go-diskfs refused zero bytes before reading anything else).
	for _, off := range []int{813, 830, 847, 864} {
		copy(pvd[off:], "0000000000000000")
	}
	term := b.VD(n)
	term[0], term[6] = 255, 1
	copy(term[1:], "CD001")
	return b
}

// VD is volume descriptor i (0 is the primary).
func (b *Builder) VD(i int) []byte { return b.Img[(16+i)*Sector : (17+i)*Sector] }

// Alloc appends n zero sectors and returns the first.
func (b *Builder) Alloc(n int) uint32 {
	s := len(b.Img) / Sector
	b.Img = append(b.Img, make([]byte, n*Sector)...)
	return uint32(s)
}

// Record is a directory record; su is its system use area (Rock Ridge).
func Record(name []byte, extent, size uint32, dir bool, su []byte) []byte {
	l := 33 + len(name)
	if len(name)%2 == 0 {
		l++
	}
	l += len(su)
	r := make([]byte, l)
	r[0] = byte(l)
	binary.LittleEndian.PutUint32(r[2:], extent)
	binary.BigEndian.PutUint32(r[6:], extent)
	binary.LittleEndian.PutUint32(r[10:], size)
	binary.BigEndian.PutUint32(r[14:], size)
	if dir {
		r[25] = 2
	}
	r[28] = 1
	r[32] = byte(len(name))
	copy(r[33:], name)
	copy(r[l-len(su):], su)
	return r
}

// Dir writes a directory of one sector at sector, with "." and ".."; at Root it is
// also the primary descriptor's root record.
func (b *Builder) Dir(sector, parent uint32, recs ...[]byte) {
	d := append(Record([]byte{0}, sector, Sector, true, nil), Record([]byte{1}, parent, Sector, true, nil)...)
	for _, r := range recs {
		d = append(d, r...)
	}
	if len(d) > Sector {
		panic("directory larger than a sector")
	}
	copy(b.Img[int(sector)*Sector:(int(sector)+1)*Sector], make([]byte, Sector)) // rewritten whole
	copy(b.Img[int(sector)*Sector:], d)
	if sector == b.Root {
		copy(b.VD(0)[156:], Record([]byte{0}, b.Root, Sector, true, nil))
	}
}

// File stores data in new sectors and returns its record.
func (b *Builder) File(name string, data []byte) []byte {
	s := b.Alloc((len(data) + Sector - 1) / Sector)
	copy(b.Img[int(s)*Sector:], data)
	return Record([]byte(name), s, uint32(len(data)), false, nil)
}

// PathRecord is one path table record: the directory's extent, its parent's number
// (1 is the root) and its name.
type PathRecord struct {
	Extent uint32
	Parent uint16
	Name   string
}

// PathTable writes the little- and big-endian path tables of records into new
// sectors and points the primary descriptor at them, claiming their real size.
func (b *Builder) PathTable(recs ...PathRecord) {
	var l, m []byte
	for _, r := range recs {
		name := []byte(r.Name)
		if len(name) == 0 {
			name = []byte{0}
		}
		e := make([]byte, 8+len(name)+len(name)%2)
		e[0] = byte(len(name))
		copy(e[8:], name)
		le, be := append([]byte(nil), e...), append([]byte(nil), e...)
		binary.LittleEndian.PutUint32(le[2:], r.Extent)
		binary.LittleEndian.PutUint16(le[6:], r.Parent)
		binary.BigEndian.PutUint32(be[2:], r.Extent)
		binary.BigEndian.PutUint16(be[6:], r.Parent)
		l, m = append(l, le...), append(m, be...)
	}
	n := (len(l) + Sector - 1) / Sector
	ls, ms := b.Alloc(n), b.Alloc(n)
	copy(b.Img[int(ls)*Sector:], l)
	copy(b.Img[int(ms)*Sector:], m)
	pvd := b.VD(0)
	binary.LittleEndian.PutUint32(pvd[132:], uint32(len(l)))
	binary.BigEndian.PutUint32(pvd[136:], uint32(len(l)))
	binary.LittleEndian.PutUint32(pvd[140:], ls)
	binary.BigEndian.PutUint32(pvd[148:], ms)
}

// UCS2 is a Joliet name.
func UCS2(s string) []byte {
	var out []byte
	for _, u := range utf16.Encode([]rune(s)) {
		out = append(out, byte(u>>8), byte(u))
	}
	return out
}

// Joliet makes descriptor i a Joliet supplementary descriptor (UCS-2 level 3) whose
// root directory is at root (written with Dir, its records named with UCS2).
func (b *Builder) Joliet(i int, root uint32) {
	vd := b.VD(i)
	vd[0], vd[6] = 2, 1
	copy(vd[1:], "CD001")
	copy(vd[88:], "%/E")
	binary.LittleEndian.PutUint16(vd[128:], Sector)
	binary.BigEndian.PutUint16(vd[130:], Sector)
	copy(vd[156:], Record([]byte{0}, root, Sector, true, nil))
}

// BootEntry is an El Torito catalog entry: bootable, media type (0 no emulation),
// the image's first sector and its length in 512-byte sectors.
func BootEntry(bootable bool, media byte, sector uint32, sectors uint16) []byte {
	e := make([]byte, 32)
	if bootable {
		e[0] = 0x88
	}
	e[1] = media
	binary.LittleEndian.PutUint16(e[6:], sectors)
	binary.LittleEndian.PutUint32(e[8:], sector)
	return e
}

// SectionHeader starts a catalog section of n entries for platform (0 BIOS, 0xef
// EFI); last says no section follows.
func SectionHeader(last bool, platform byte, n uint16) []byte {
	h := make([]byte, 32)
	h[0] = 0x90
	if last {
		h[0] = 0x91
	}
	h[1] = platform
	binary.LittleEndian.PutUint16(h[2:], n)
	return h
}

// ElTorito makes descriptor i an El Torito boot record whose catalog (written into a
// new sector) is a validation entry for platform followed by entries (the default
// entry first, then section headers and their entries).
func (b *Builder) ElTorito(i int, platform byte, entries ...[]byte) uint32 {
	val := make([]byte, 32)
	val[0], val[1], val[30], val[31] = 1, platform, 0x55, 0xAA
	var sum uint16
	for j := 0; j < 32; j += 2 {
		sum += binary.LittleEndian.Uint16(val[j:])
	}
	binary.LittleEndian.PutUint16(val[28:], -sum)
	cat := val
	for _, e := range entries {
		cat = append(cat, e...)
	}
	s := b.Alloc((len(cat) + Sector - 1) / Sector)
	copy(b.Img[int(s)*Sector:], cat)
	vd := b.VD(i)
	vd[0], vd[6] = 0, 1
	copy(vd[1:], "CD001")
	copy(vd[7:], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(vd[71:], s)
	return s
}

// Bytes is the image, with the primary descriptor's volume size set to the image's
// when the test has not set one.
func (b *Builder) Bytes() []byte {
	if binary.LittleEndian.Uint32(b.VD(0)[80:]) == 0 {
		binary.LittleEndian.PutUint32(b.VD(0)[80:], uint32(len(b.Img)/Sector))
		binary.BigEndian.PutUint32(b.VD(0)[84:], uint32(len(b.Img)/Sector))
	}
	return b.Img
}

// Write stores the image as name in a new temporary directory of t.
func (b *Builder) Write(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
