package isoinspect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"unicode/utf16"
)

// This ISO9660 reader is the only one bootlab has: boot menus, the kernel and initrd of
// a direct boot, provenance, `bootlab inspect`, bisect candidates and the fixture's
// own checks all read ISOs through it, because an image is input we did not write and
// some of those reads happen before anything else (`bootlab run --iso`, `bootlab
// inspect`). go-diskfs, used before, allocates whatever a record claims (a path table
// or directory of up to 4 GiB, a file read into a buffer of its claimed size) and
// follows directory records wherever they point: a 368 KiB image claiming a 3.75 GiB
// key took 13.4 GB of memory, one claiming a multi-GiB path table killed the process
// with "fatal error: out of memory" under a 4 GB address-space limit, and a directory
// pointing back at the root never ended.
//
// Here every claim is checked against the real image size before a buffer exists:
// the volume descriptors' volume size, path tables and root records, each directory
// and Rock Ridge continuation extent, every file's extent (a file cannot run past the
// image), the El Torito boot catalog and the images it names. The sum of structure
// bytes read cannot exceed the image, each directory extent is read once (a second
// visit is a loop), a path table's parents come before their children (otherwise it
// loops), depth, entry and descriptor counts are capped, and the context is checked
// per directory. File data is never read whole: it is streamed, bounded by the
// file's extent, and callers cap what they keep.
//
// Names: Rock Ridge (NM, PX, SL, CL/RE) when the root says SUSP is present (xorriso
// -R, NixOS and Debian images carry it); otherwise Joliet (UCS-2) when a Joliet
// supplementary descriptor is present; otherwise the ISO9660 names, lower-cased and
// without ";1", as Linux shows them.

const (
	isoSector = 2048
	// Deeper than any real image (ISO9660 allows 8 levels, Rock Ridge relocation
	// a few more), low enough that a chain of directories ends quickly.
	isoMaxDepth = 64
	// A directory record is at least 34 bytes: 16 MiB is some 500,000 entries, far
	// more than any boot ISO has in one directory. The same cap holds a path table
	// (10 bytes or more per directory).
	isoMaxDir = 16 << 20
	// Continuation areas per record: real ones use at most one or two.
	isoMaxCE = 16
	// Volume descriptors before the terminator: real images have three to five
	// (primary, boot record, Joliet, maybe an enhanced one).
	isoMaxVD = 32
	// El Torito boot catalog sectors: one holds 63 entries, and real catalogs (a BIOS
	// and an EFI image) fit in one.
	isoMaxCatalog = 8
	// Symlinks followed resolving one path, as Linux's limit of 40 but lower: a boot
	// ISO has one or two (Debian's "debian -> .").
	isoMaxLinkHops = 16
)

// A real boot ISO has tens to a few thousand entries on the ISO itself (its root
// filesystem lives in a squashfs). A variable so a test can reach it cheaply.
var isoMaxEntries = 200_000

// isoEntry is one file or directory on the ISO.
type isoEntry struct {
	Path   string
	Mode   fs.FileMode
	Offset int64 // byte offset of the data in the image
	Size   int64
	Link   string
	extent uint32
	dirLen uint32 // a directory's extent length
	child  uint32 // Rock Ridge CL: the directory was relocated to this extent
}

// BootImage is one El Torito boot catalog entry: what the firmware loads.
type BootImage struct {
	// Platform is "bios", "efi", or the catalog's platform id in hex.
	Platform string `json:"platform"`
	Bootable bool   `json:"bootable"`
	// Media is "no emulation", "floppy" or "hard disk".
	Media string `json:"media"`
	// Sector is the image's first 2048-byte sector on the ISO, Sectors its length in
	// 512-byte sectors as the catalog says (0 for EFI images too large for the field).
	Sector  uint32 `json:"sector"`
	Sectors uint16 `json:"sectors"`
	// File is the ISO file whose data starts there, when there is one.
	File string `json:"file,omitempty"`
}

type isoImage struct {
	r     io.ReaderAt
	size  int64
	Label string
	// Names says which names the tree carries: "rock ridge", "joliet" or "iso9660".
	Names string
	// Entries in walk order (each directory's entries sorted by name, parents
	// before children), paths slash-separated without a leading slash.
	Entries []isoEntry
	Boot    []BootImage

	susp     bool
	suspSkip int
	joliet   bool
	visited  map[uint32]bool
	index    map[string]int   // path -> Entries index, built by lookup
	children map[string][]int // directory path ("" for the root) -> Entries indexes
	read     int64            // bytes read so far, see readAt
}

// readSlack is what readAt allows beyond the image size: the root's first record is
// read twice, and the volume descriptors are not counted at all.
const readSlack = 64 << 10

// ErrHostile marks structure no honest image has: a claim larger than the image, a
// loop, a count past a cap.
var ErrHostile = errors.New("malformed or hostile image")

// ErrNotISO is a file that is no ISO9660 image at all (no primary volume descriptor):
// nothing can boot it as a CD.
var ErrNotISO = errors.New("not an ISO9660 image")

// volumeDescriptors are the descriptors readISO uses.
type volumeDescriptors struct {
	primary, joliet []byte
	bootCatalog     uint32 // sector; 0: no El Torito boot record
}

// readISO parses the directory tree of an ISO9660 image of the given real size.
func readISO(ctx context.Context, r io.ReaderAt, size int64) (*isoImage, error) {
	img := &isoImage{r: r, size: size, visited: map[uint32]bool{}, children: map[string][]int{}, Names: "iso9660"}
	vds, err := img.volumeDescriptors()
	if err != nil {
		return nil, err
	}
	pvd := vds.primary
	if err := img.checkVD("primary volume descriptor", pvd); err != nil {
		return nil, err
	}
	img.Label = strings.TrimRight(string(pvd[40:72]), " \x00")
	root, _ := parseRecord(pvd[156:190]) // checkVD checked it
	// The SUSP "SP" entry in the root's "." record says Rock Ridge is present.
	first, err := img.readExtent(root.extent, 256)
	if err == nil && len(first) > 0 {
		if rec, ok := parseRecord(first[:min(int(first[0]), len(first))]); ok {
			su := rec.systemUse
			if len(su) >= 7 && su[0] == 'S' && su[1] == 'P' && su[4] == 0xBE && su[5] == 0xEF {
				img.susp, img.suspSkip = true, int(su[6])
				img.Names = "rock ridge"
			}
		}
	}
	if vds.joliet != nil {
		// Checked whether or not its names are used: a reader that does use them (the
		// Linux kernel without Rock Ridge) would follow its claims.
		if err := img.checkVD("Joliet volume descriptor", vds.joliet); err != nil {
			return nil, err
		}
		if !img.susp {
			img.joliet, img.Names = true, "joliet"
			root, _ = parseRecord(vds.joliet[156:190])
		}
	}
	if err := img.walkDir(ctx, root.extent, root.size, "", 0); err != nil {
		return nil, err
	}
	if vds.bootCatalog != 0 {
		if err := img.readBootCatalog(vds.bootCatalog); err != nil {
			return nil, fmt.Errorf("reading the El Torito boot catalog: %w", err)
		}
	}
	img.lookup("") // builds the index now: an ISO may be read from several goroutines
	return img, nil
}

// volumeDescriptors reads the descriptors from sector 16 to the terminator.
func (img *isoImage) volumeDescriptors() (volumeDescriptors, error) {
	var vds volumeDescriptors
	for i := int64(0); ; i++ {
		off := (16 + i) * isoSector
		if off+isoSector > img.size {
			break
		}
		if i >= isoMaxVD {
			return vds, fmt.Errorf("%w: more than %d volume descriptors without a terminator", ErrHostile, isoMaxVD)
		}
		vd := make([]byte, isoSector)
		if _, err := img.r.ReadAt(vd, off); err != nil {
			return vds, fmt.Errorf("reading volume descriptor %d: %w", i, err)
		}
		if string(vd[1:6]) != "CD001" {
			break
		}
		switch vd[0] {
		case 0:
			if strings.TrimRight(string(vd[7:39]), "\x00 ") == "EL TORITO SPECIFICATION" && vds.bootCatalog == 0 {
				vds.bootCatalog = binary.LittleEndian.Uint32(vd[71:])
				if vds.bootCatalog == 0 {
					return vds, fmt.Errorf("%w: the El Torito boot record puts the boot catalog at sector 0", ErrHostile)
				}
			}
		case 1:
			if vds.primary == nil {
				vds.primary = vd
			}
		case 2:
			// Joliet: a supplementary descriptor whose escape sequences name UCS-2
			// level 1, 2 or 3.
			esc := string(vd[88:91])
			if vds.joliet == nil && (esc == "%/@" || esc == "%/C" || esc == "%/E") {
				vds.joliet = vd
			}
		case 255:
			if vds.primary == nil {
				return vds, fmt.Errorf("%w: no primary volume descriptor before the terminator", ErrNotISO)
			}
			return vds, nil
		}
	}
	if vds.primary == nil {
		return vds, fmt.Errorf("%w: no primary volume descriptor (CD001 at sector 16)", ErrNotISO)
	}
	return vds, nil
}

// checkVD checks what a primary or Joliet descriptor claims: the block size, the
// volume size, the path tables and the root directory record.
func (img *isoImage) checkVD(what string, vd []byte) error {
	if bs := binary.LittleEndian.Uint16(vd[128:]); bs != isoSector {
		return fmt.Errorf("%w: %s: logical block size %d (only %d is read)", ErrHostile, what, bs, isoSector)
	}
	if n := int64(binary.LittleEndian.Uint32(vd[80:])); n*isoSector > img.size {
		return fmt.Errorf("%w: %s claims %d sectors (%d bytes), more than the %d-byte image holds (truncated?)", ErrHostile, what, n, n*isoSector, img.size)
	}
	root, ok := parseRecord(vd[156:190])
	if !ok || root.flags&2 == 0 {
		return fmt.Errorf("%w: %s: bad root directory record", ErrHostile, what)
	}
	if root.size > isoMaxDir {
		return fmt.Errorf("%w: %s: the root directory claims %d bytes, more than the %d any image needs", ErrHostile, what, root.size, isoMaxDir)
	}
	if off := int64(root.extent) * isoSector; off > img.size || int64(root.size) > img.size-off {
		return fmt.Errorf("%w: %s: the root directory's %d bytes at byte %d run past the end of the %d-byte image", ErrHostile, what, root.size, off, img.size)
	}
	return img.checkPathTables(what, vd)
}

// checkPathTables checks a descriptor's path tables. bootlab walks the directory
// records and needs no path table, but other readers use it (go-diskfs allocated its
// claimed size whole), so a table that claims more than the image, or whose records
// loop, marks the image as hostile. The little-endian table is read and each record's
// parent must come before it (ISO9660 orders the table so); the others are checked
// for place and size.
func (img *isoImage) checkPathTables(what string, vd []byte) error {
	size := int64(binary.LittleEndian.Uint32(vd[132:]))
	if size > img.size {
		return fmt.Errorf("%w: %s claims a %d-byte path table, more than the %d-byte image holds", ErrHostile, what, size, img.size)
	}
	if size > isoMaxDir {
		return fmt.Errorf("%w: %s claims a %d-byte path table, more than the %d any image needs", ErrHostile, what, size, isoMaxDir)
	}
	locs := []struct {
		name   string
		sector uint32
	}{
		{"little-endian", binary.LittleEndian.Uint32(vd[140:])},
		{"optional little-endian", binary.LittleEndian.Uint32(vd[144:])},
		{"big-endian", binary.BigEndian.Uint32(vd[148:])},
		{"optional big-endian", binary.BigEndian.Uint32(vd[152:])},
	}
	for i, l := range locs {
		if l.sector == 0 && i != 0 {
			continue // the optional tables are usually absent
		}
		if off := int64(l.sector) * isoSector; off > img.size || size > img.size-off {
			return fmt.Errorf("%w: %s: the %s path table's %d bytes at sector %d run past the end of the %d-byte image", ErrHostile, what, l.name, size, l.sector, img.size)
		}
	}
	if size == 0 {
		return nil
	}
	pt, err := img.readExtent(locs[0].sector, size)
	if err != nil {
		return fmt.Errorf("%s: path table: %w", what, err)
	}
	n := 0
	for pos := 0; pos < len(pt); {
		l := int(pt[pos])
		if l == 0 {
			break // padding after the last record
		}
		if pos+8+l > len(pt) {
			return fmt.Errorf("%w: %s: path table record %d runs past the table's %d bytes", ErrHostile, what, n+1, size)
		}
		n++
		if n > isoMaxEntries {
			return fmt.Errorf("%w: %s: more than %d path table records", ErrHostile, what, isoMaxEntries)
		}
		extent := binary.LittleEndian.Uint32(pt[pos+2:])
		parent := int(binary.LittleEndian.Uint16(pt[pos+6:]))
		if parent < 1 || parent > n || (n > 1 && parent == n) {
			return fmt.Errorf("%w: %s: path table record %d names record %d as its parent (parents come first: a loop)", ErrHostile, what, n, parent)
		}
		if int64(extent)*isoSector >= img.size {
			return fmt.Errorf("%w: %s: path table record %d puts its directory at sector %d, past the end of the %d-byte image", ErrHostile, what, n, extent, img.size)
		}
		pos += 8 + l + l%2
	}
	return nil
}

// readExtent reads n bytes at a sector.
func (img *isoImage) readExtent(sector uint32, n int64) ([]byte, error) {
	return img.readAt(int64(sector)*isoSector, n)
}

// readAt reads n bytes of structure at off, refusing anything past the real end of
// the image and any read beyond the budget: an honest image is read at most once over
// (directories, path table, Rock Ridge continuation areas, the boot catalog and a few
// small files are distinct bytes), so more means overlapping or repeated extents.
// Both are checked before the buffer exists.
func (img *isoImage) readAt(off, n int64) ([]byte, error) {
	if n < 0 || n > img.size+readSlack-img.read {
		return nil, fmt.Errorf("%w: reading %d bytes more would read more than the %d-byte image holds (overlapping or repeated extents)", ErrHostile, n, img.size)
	}
	if off < 0 || off > img.size || n > img.size-off {
		return nil, fmt.Errorf("%w: extent at byte %d of %d bytes runs past the end of the %d-byte image", ErrHostile, off, n, img.size)
	}
	img.read += n
	b := make([]byte, n)
	if _, err := img.r.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("reading byte %d: %w", off, err)
	}
	return b, nil
}

type dirRecord struct {
	extent    uint32
	size      uint32
	flags     byte
	name      []byte
	systemUse []byte
}

func parseRecord(b []byte) (dirRecord, bool) {
	if len(b) < 34 || int(b[0]) > len(b) || b[0] < 34 {
		return dirRecord{}, false
	}
	b = b[:b[0]]
	nl := int(b[32])
	if 33+nl > len(b) {
		return dirRecord{}, false
	}
	r := dirRecord{
		extent: binary.LittleEndian.Uint32(b[2:]),
		size:   binary.LittleEndian.Uint32(b[10:]),
		flags:  b[25],
		name:   b[33 : 33+nl],
	}
	su := 33 + nl
	if nl%2 == 0 {
		su++ // padding byte after an even-length name
	}
	if su < len(b) {
		r.systemUse = b[su:]
	}
	return r, true
}

func (img *isoImage) walkDir(ctx context.Context, extent, size uint32, dir string, depth int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reading directory /%s: %w", dir, err)
	}
	if depth > isoMaxDepth {
		return fmt.Errorf("%w: directories nested deeper than %d at /%s", ErrHostile, isoMaxDepth, dir)
	}
	if img.visited[extent] {
		return fmt.Errorf("%w: directory loop: /%s points back at sector %d, already read", ErrHostile, dir, extent)
	}
	img.visited[extent] = true
	if size > isoMaxDir {
		return fmt.Errorf("%w: directory /%s claims %d bytes, more than the %d any image needs", ErrHostile, dir, size, isoMaxDir)
	}
	data, err := img.readExtent(extent, int64(size))
	if err != nil {
		return fmt.Errorf("directory /%s: %w", dir, err)
	}
	var entries []isoEntry
	for pos := 0; pos < len(data); {
		l := int(data[pos])
		if l == 0 {
			// Records never cross a sector boundary: zero means "next sector".
			pos = (pos/isoSector + 1) * isoSector
			continue
		}
		rec, ok := parseRecord(data[pos:])
		if !ok {
			return fmt.Errorf("%w: bad directory record at byte %d of /%s", ErrHostile, pos, dir)
		}
		pos += l
		if len(rec.name) == 1 && (rec.name[0] == 0 || rec.name[0] == 1) {
			continue // "." and ".."
		}
		e, skip, err := img.entry(rec)
		if err != nil {
			return fmt.Errorf("directory /%s: %w", dir, err)
		}
		if skip {
			continue
		}
		if n := len(entries); n > 0 && entries[n-1].Path == e.Path && rec.flags&2 == 0 {
			// A multi-extent file (over 4 GiB) continues in the next record of the
			// same name; contiguous parts are one file.
			prev := &entries[n-1]
			if prev.Offset+prev.Size == e.Offset {
				prev.Size += e.Size
				if prev.Size > img.size-prev.Offset {
					return fmt.Errorf("%w: /%s: its %d bytes at byte %d run past the end of the %d-byte image", ErrHostile, path.Join(dir, prev.Path), prev.Size, prev.Offset, img.size)
				}
				continue
			}
		}
		if strings.Contains(e.Path, "/") || e.Path == "" || e.Path == "." || e.Path == ".." {
			return fmt.Errorf("%w: entry name %q in /%s", ErrHostile, e.Path, dir)
		}
		if e.Mode.IsRegular() && (e.Offset > img.size || e.Size > img.size-e.Offset) {
			// Every file listed lies inside the image, so a reader of its data never
			// needs to trust its size.
			return fmt.Errorf("%w: /%s: its %d bytes at byte %d run past the end of the %d-byte image", ErrHostile, path.Join(dir, e.Path), e.Size, e.Offset, img.size)
		}
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	for i := 1; i < len(entries); i++ {
		if entries[i].Path == entries[i-1].Path {
			// Two entries of one name: which one a reader sees (which root key wins)
			// would depend on the reader.
			return fmt.Errorf("%w: two entries named %q in /%s", ErrHostile, entries[i].Path, dir)
		}
	}
	for _, e := range entries {
		if len(img.Entries) >= isoMaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrHostile, isoMaxEntries)
		}
		name := e.Path
		e.Path = path.Join(dir, name)
		img.Entries = append(img.Entries, e)
		img.children[dir] = append(img.children[dir], len(img.Entries)-1)
		if e.Mode.IsDir() {
			ext, sz := e.extent, e.dirLen
			if e.child != 0 {
				// Rock Ridge deep relocation: the real directory is elsewhere; its
				// size is in its own "." record.
				ext = e.child
				b, err := img.readExtent(ext, 34)
				if err != nil {
					return fmt.Errorf("relocated directory /%s: %w", e.Path, err)
				}
				sz = binary.LittleEndian.Uint32(b[10:])
			}
			if err := img.walkDir(ctx, ext, sz, e.Path, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// entry turns a record into an entry; skip is true for a Rock Ridge relocated
// directory's original place (RE), which is listed where its CL points.
func (img *isoImage) entry(rec dirRecord) (e isoEntry, skip bool, err error) {
	e = isoEntry{extent: rec.extent, dirLen: rec.size, Offset: int64(rec.extent) * isoSector, Size: int64(rec.size), Mode: 0o444}
	if rec.flags&2 != 0 {
		e.Mode = fs.ModeDir | 0o555
		e.Size = 0
	}
	var nm []byte
	var sl slTarget
	var haveNM, havePX bool
	if img.susp && len(rec.systemUse) > img.suspSkip {
		su := rec.systemUse[img.suspSkip:]
		for ce := 0; ; ce++ {
			var next *[3]uint32
			for len(su) >= 4 {
				sig, l := string(su[:2]), int(su[2])
				if l < 4 || l > len(su) {
					break
				}
				body := su[4:l]
				switch sig {
				case "NM":
					if len(body) >= 1 && body[0]&0x6 == 0 {
						nm = append(nm, body[1:]...)
						haveNM = true
					}
				case "PX":
					if len(body) >= 4 {
						e.Mode = cpioFileMode(binary.LittleEndian.Uint32(body))
						havePX = true
					}
				case "SL":
					if len(body) >= 1 {
						sl.add(body[1:])
					}
				case "CE":
					if len(body) >= 20 {
						next = &[3]uint32{binary.LittleEndian.Uint32(body), binary.LittleEndian.Uint32(body[8:]), binary.LittleEndian.Uint32(body[16:])}
					}
				case "RE":
					skip = true
				case "CL":
					if len(body) >= 4 {
						e.child = binary.LittleEndian.Uint32(body)
						e.Mode = fs.ModeDir | 0o555
						e.Size = 0
					}
				}
				if sig == "ST" {
					break
				}
				su = su[l:]
			}
			if next == nil {
				break
			}
			if ce >= isoMaxCE {
				return e, false, fmt.Errorf("%w: more than %d Rock Ridge continuation areas in one record", ErrHostile, isoMaxCE)
			}
			if next[2] > isoSector || next[1] >= isoSector {
				return e, false, fmt.Errorf("%w: Rock Ridge continuation of %d bytes at offset %d", ErrHostile, next[2], next[1])
			}
			su, err = img.readAt(int64(next[0])*isoSector+int64(next[1]), int64(next[2]))
			if err != nil {
				return e, false, fmt.Errorf("reading a Rock Ridge continuation area: %w", err)
			}
		}
	}
	if havePX && rec.flags&2 != 0 && !e.Mode.IsDir() {
		e.Mode = fs.ModeDir | e.Mode.Perm() // the record's directory flag decides how it is walked
	}
	if havePX && rec.flags&2 == 0 && e.Mode.IsDir() && e.child == 0 {
		e.Mode = e.Mode.Perm() // a "directory" whose record says file is not walked
	}
	if e.Mode&fs.ModeSymlink != 0 {
		e.Link = string(sl.b)
		e.Size = 0
	}
	switch {
	case haveNM:
		e.Path = string(nm)
	case img.joliet:
		e.Path, err = jolietName(rec.name, rec.flags&2 != 0)
		if err != nil {
			return e, false, err
		}
	default:
		e.Path = isoName(rec.name, rec.flags&2 != 0)
	}
	return e, skip, nil
}

// jolietName decodes a Joliet name (UCS-2, big-endian) without its ";1" version.
// Code units are decoded as UTF-16, so a surrogate pair (which some tools write)
// becomes one character and a lone surrogate U+FFFD.
func jolietName(b []byte, dir bool) (string, error) {
	if len(b)%2 != 0 {
		return "", fmt.Errorf("%w: Joliet name of odd length %d", ErrHostile, len(b))
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	s := string(utf16.Decode(u))
	if !dir {
		if i := strings.LastIndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
	}
	return s, nil
}

// slTarget assembles a Rock Ridge symlink target from the component records of one
// or more SL entries (a component may continue in the next entry).
type slTarget struct {
	b             []byte
	cont, started bool
}

func (s *slTarget) add(body []byte) {
	for len(body) >= 2 {
		flags, l := body[0], int(body[1])
		if 2+l > len(body) {
			return
		}
		content := body[2 : 2+l]
		body = body[2+l:]
		if s.started && !s.cont && string(s.b) != "/" {
			s.b = append(s.b, '/')
		}
		s.started = true
		switch {
		case flags&0x02 != 0:
			s.b = append(s.b, '.')
		case flags&0x04 != 0:
			s.b = append(s.b, ".."...)
		case flags&0x08 != 0:
			s.b = append(s.b[:0], '/')
		default:
			s.b = append(s.b, content...)
		}
		s.cont = flags&0x01 != 0
	}
}

// isoName is what Linux shows for a plain ISO9660 name: lower case, without the
// ";1" version and the trailing dot of a name without extension.
func isoName(b []byte, dir bool) string {
	s := string(b)
	if !dir {
		if i := strings.LastIndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSuffix(s, ".")
	}
	// ASCII only: strings.ToLower would turn bytes that are not UTF-8 into U+FFFD
	// and so hide what the image really holds.
	lower := []byte(s)
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	return string(lower)
}

// lookup finds an entry by path (through an index: an image may list many layers,
// and a scan per layer would be quadratic).
func (img *isoImage) lookup(p string) (isoEntry, bool) {
	if img.index == nil {
		img.index = make(map[string]int, len(img.Entries))
		for i, e := range img.Entries {
			img.index[e.Path] = i
		}
	}
	i, ok := img.index[p]
	if !ok {
		return isoEntry{}, false
	}
	return img.Entries[i], true
}

// readFile reads a regular file of at most max bytes: a larger claim is an error
// before anything is allocated, and so is data past the end of the image.
func (img *isoImage) readFile(e isoEntry, max int64) ([]byte, error) {
	if !e.Mode.IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", e.Path)
	}
	if e.Size > max {
		return nil, fmt.Errorf("%s claims %d bytes, more than the %d a key file may have", e.Path, e.Size, max)
	}
	return img.readExtent(e.extent, e.Size)
}
