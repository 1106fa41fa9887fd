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
)

// This ISO9660 reader replaces go-diskfs's for inspection because inspection runs on
// every image before every boot, and an image is input we did not write. go-diskfs
// allocates whatever a record claims (a path table or directory of up to 4 GiB, a
// file read into a buffer of its claimed size) and follows directory records wherever
// they point, so a 368 KiB image claiming a 3.75 GiB key took 13.4 GB of memory and a
// directory pointing back at the root never ended. Here every extent is checked
// against the real image size before it is read, the sum of directory bytes cannot
// exceed the image, each directory extent is read once (a second visit is a loop),
// depth and entry counts are capped, and the context is checked per directory.
// Rock Ridge names, modes and symlinks are read (xorriso -R, NixOS and Debian images
// all carry them); without Rock Ridge, names are the ISO9660 ones, lower-cased and
// without ";1", as Linux shows them. Joliet is not read.

const (
	isoSector = 2048
	// Deeper than any real image (ISO9660 allows 8 levels, Rock Ridge relocation
	// a few more), low enough that a chain of directories ends quickly.
	isoMaxDepth = 64
	// A directory record is at least 34 bytes: 16 MiB is some 500,000 entries, far
	// more than any boot ISO has in one directory.
	isoMaxDir = 16 << 20
	// Continuation areas per record: real ones use at most one or two.
	isoMaxCE = 16
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

type isoImage struct {
	r     io.ReaderAt
	size  int64
	Label string
	// Entries in walk order (each directory's entries sorted by name, parents
	// before children), paths slash-separated without a leading slash.
	Entries []isoEntry

	susp     bool
	suspSkip int
	visited  map[uint32]bool
	index    map[string]int // path -> Entries index, built by lookup
	read     int64          // bytes read so far, see readAt
}

// readSlack is what readAt allows beyond the image size: the root's first record is
// read twice, and the volume descriptors are not counted at all.
const readSlack = 64 << 10

// errHostile marks structure no honest image has.
var errHostile = errors.New("malformed or hostile image")

// readISO parses the directory tree of an ISO9660 image of the given real size.
func readISO(ctx context.Context, r io.ReaderAt, size int64) (*isoImage, error) {
	img := &isoImage{r: r, size: size, visited: map[uint32]bool{}}
	pvd, err := img.primaryVD()
	if err != nil {
		return nil, err
	}
	if bs := binary.LittleEndian.Uint16(pvd[128:]); bs != isoSector {
		return nil, fmt.Errorf("%w: logical block size %d (only %d is read)", errHostile, bs, isoSector)
	}
	img.Label = strings.TrimRight(string(pvd[40:72]), " \x00")
	root, ok := parseRecord(pvd[156:190])
	if !ok || root.flags&2 == 0 {
		return nil, fmt.Errorf("%w: bad root directory record", errHostile)
	}
	// The SUSP "SP" entry in the root's "." record says Rock Ridge is present.
	first, err := img.readExtent(root.extent, 256)
	if err == nil && len(first) > 0 {
		if rec, ok := parseRecord(first[:min(int(first[0]), len(first))]); ok {
			su := rec.systemUse
			if len(su) >= 7 && su[0] == 'S' && su[1] == 'P' && su[4] == 0xBE && su[5] == 0xEF {
				img.susp, img.suspSkip = true, int(su[6])
			}
		}
	}
	if err := img.walkDir(ctx, root.extent, root.size, "", 0); err != nil {
		return nil, err
	}
	return img, nil
}

func (img *isoImage) primaryVD() ([]byte, error) {
	vd := make([]byte, isoSector)
	for i := int64(0); ; i++ {
		off := (16 + i) * isoSector
		if off+isoSector > img.size {
			break
		}
		if _, err := img.r.ReadAt(vd, off); err != nil {
			return nil, fmt.Errorf("reading volume descriptor %d: %w", i, err)
		}
		if string(vd[1:6]) != "CD001" {
			break
		}
		switch vd[0] {
		case 1:
			return vd, nil
		case 255:
			return nil, fmt.Errorf("not an ISO9660 image: no primary volume descriptor before the terminator")
		}
	}
	return nil, fmt.Errorf("not an ISO9660 image: no primary volume descriptor (CD001 at sector 16)")
}

// readExtent reads n bytes at a sector.
func (img *isoImage) readExtent(sector uint32, n int64) ([]byte, error) {
	return img.readAt(int64(sector)*isoSector, n)
}

// readAt reads n bytes at off, refusing anything past the real end of the image and
// any read beyond the budget: an honest image is read at most once over (directories,
// Rock Ridge continuation areas and a few small files are distinct bytes), so more
// means overlapping or repeated extents. Both are checked before the buffer exists.
func (img *isoImage) readAt(off, n int64) ([]byte, error) {
	if n < 0 || n > img.size+readSlack-img.read {
		return nil, fmt.Errorf("%w: reading %d bytes more would read more than the %d-byte image holds (overlapping or repeated extents)", errHostile, n, img.size)
	}
	if off < 0 || off > img.size || n > img.size-off {
		return nil, fmt.Errorf("%w: extent at byte %d of %d bytes runs past the end of the %d-byte image", errHostile, off, n, img.size)
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
		return fmt.Errorf("%w: directories nested deeper than %d at /%s", errHostile, isoMaxDepth, dir)
	}
	if img.visited[extent] {
		return fmt.Errorf("%w: directory loop: /%s points back at sector %d, already read", errHostile, dir, extent)
	}
	img.visited[extent] = true
	if size > isoMaxDir {
		return fmt.Errorf("%w: directory /%s claims %d bytes, more than the %d any image needs", errHostile, dir, size, isoMaxDir)
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
			return fmt.Errorf("%w: bad directory record at byte %d of /%s", errHostile, pos, dir)
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
				continue
			}
		}
		if strings.Contains(e.Path, "/") || e.Path == "" || e.Path == "." || e.Path == ".." {
			return fmt.Errorf("%w: entry name %q in /%s", errHostile, e.Path, dir)
		}
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	for _, e := range entries {
		if len(img.Entries) >= isoMaxEntries {
			return fmt.Errorf("%w: more than %d entries", errHostile, isoMaxEntries)
		}
		name := e.Path
		e.Path = path.Join(dir, name)
		img.Entries = append(img.Entries, e)
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
				return e, false, fmt.Errorf("%w: more than %d Rock Ridge continuation areas in one record", errHostile, isoMaxCE)
			}
			if next[2] > isoSector || next[1] >= isoSector {
				return e, false, fmt.Errorf("%w: Rock Ridge continuation of %d bytes at offset %d", errHostile, next[2], next[1])
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
	if haveNM {
		e.Path = string(nm)
	} else {
		e.Path = isoName(rec.name, rec.flags&2 != 0)
	}
	return e, skip, nil
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
