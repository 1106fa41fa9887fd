package isoinspect

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// The newc reader is written by hand rather than taken from a library: none in go.mod
// reads cpio, and a real initrd is not one archive but a chain — Debian's starts with
// an uncompressed early-microcode archive, zero padding, then a zstd or gzip archive —
// so the reader must stop exactly at each TRAILER!!! and hand the rest of the stream
// to the next decompressor, which general cpio libraries do not expose. The format is
// a 110-byte ASCII-hex header, the NUL-terminated name and the data, each padded to 4.

// CPIOEntry is one member of a newc archive.
type CPIOEntry struct {
	Name string
	Mode fs.FileMode
	Size int64
	Link string // symlink target
	// Segment counts the archives of the initrd chain from 0 (0 is microcode on
	// Debian; the root filesystem is usually the last).
	Segment int
	// Compression of the segment: "none", "gzip", "zstd" or "xz".
	Compression string
}

// ReadInitrd walks every archive of an initrd chain, calling fn for each entry with a
// reader of its data (valid only during the call). Returning an error from fn stops.
func ReadInitrd(ctx context.Context, r io.Reader, fn func(e CPIOEntry, data io.Reader) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for seg := 0; ; seg++ {
		if err := skipZeros(br); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		magic, err := br.Peek(6)
		if err != nil {
			return fmt.Errorf("initrd segment %d: %w", seg, err)
		}
		switch {
		case bytes.HasPrefix(magic, []byte("07070")):
			// Uncompressed: read exactly one archive, then look at what follows.
			if err := readArchives(ctx, br, seg, "none", fn, true); err != nil {
				return err
			}
			continue
		case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
			zr, err := gzip.NewReader(br)
			if err != nil {
				return fmt.Errorf("initrd segment %d (gzip): %w", seg, err)
			}
			return readArchives(ctx, bufio.NewReaderSize(zr, 64<<10), seg, "gzip", fn, false)
		case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			zr, err := zstd.NewReader(br)
			if err != nil {
				return fmt.Errorf("initrd segment %d (zstd): %w", seg, err)
			}
			defer zr.Close()
			return readArchives(ctx, bufio.NewReaderSize(zr, 64<<10), seg, "zstd", fn, false)
		case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
			zr, err := xz.NewReader(br)
			if err != nil {
				return fmt.Errorf("initrd segment %d (xz): %w", seg, err)
			}
			return readArchives(ctx, bufio.NewReaderSize(zr, 64<<10), seg, "xz", fn, false)
		default:
			return fmt.Errorf("initrd segment %d: unsupported format (first bytes % x; gzip, zstd, xz and plain newc cpio are read)", seg, magic)
		}
	}
}

func skipZeros(br *bufio.Reader) error {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return err
		}
		if b != 0 {
			return br.UnreadByte()
		}
	}
}

// readArchives reads newc archives from r. With one=true it stops after the first
// trailer (the stream continues with another segment); otherwise it reads archives
// until the (decompressed) stream ends.
func readArchives(ctx context.Context, r *bufio.Reader, seg int, comp string, fn func(CPIOEntry, io.Reader) error, one bool) error {
	cr := &countReader{r: r}
	for {
		if err := readArchive(ctx, cr, seg, comp, fn); err != nil {
			return err
		}
		if one {
			return nil
		}
		if err := skipZeros(r); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("initrd segment %d: %w", seg, err)
		}
	}
}

type countReader struct {
	r *bufio.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countReader) pad4() error {
	if rem := c.n % 4; rem != 0 {
		if _, err := io.CopyN(io.Discard, c, 4-rem); err != nil {
			return err
		}
	}
	return nil
}

func readArchive(ctx context.Context, cr *countReader, seg int, comp string, fn func(CPIOEntry, io.Reader) error) error {
	cr.n = 0 // padding is relative to the archive's start
	hdr := make([]byte, 110)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := io.ReadFull(cr, hdr); err != nil {
			return fmt.Errorf("initrd segment %d: cpio header: %w", seg, err)
		}
		magic := string(hdr[:6])
		if magic != "070701" && magic != "070702" {
			return fmt.Errorf("initrd segment %d: bad cpio magic %q at offset %d (only newc is supported)", seg, magic, cr.n-110)
		}
		field := func(i int) (uint64, error) {
			return strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
		}
		mode, err1 := field(1)
		size, err2 := field(6)
		nameSize, err3 := field(11)
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("initrd segment %d: cpio header: %w", seg, err)
		}
		if nameSize == 0 || nameSize > 4096 {
			return fmt.Errorf("initrd segment %d: cpio name size %d out of range", seg, nameSize)
		}
		name := make([]byte, nameSize)
		if _, err := io.ReadFull(cr, name); err != nil {
			return fmt.Errorf("initrd segment %d: cpio name: %w", seg, err)
		}
		if err := cr.pad4(); err != nil {
			return fmt.Errorf("initrd segment %d: %w", seg, err)
		}
		n := strings.TrimRight(string(name), "\x00")
		if n == "TRAILER!!!" {
			return nil
		}
		e := CPIOEntry{Name: strings.TrimPrefix(strings.TrimPrefix(n, "./"), "/"), Mode: cpioFileMode(uint32(mode)), Size: int64(size), Segment: seg, Compression: comp}
		data := io.LimitReader(cr, int64(size))
		if e.Mode&fs.ModeSymlink != 0 && size < 4096 {
			t, err := io.ReadAll(data)
			if err != nil {
				return fmt.Errorf("initrd segment %d: %s: %w", seg, n, err)
			}
			e.Link = string(t)
			data = bytes.NewReader(t)
		}
		if err := fn(e, data); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, data); err != nil {
			return fmt.Errorf("initrd segment %d: %s: %w", seg, n, err)
		}
		if err := cr.pad4(); err != nil {
			return fmt.Errorf("initrd segment %d: %w", seg, err)
		}
	}
}

func cpioFileMode(m uint32) fs.FileMode {
	perm := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		perm |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		perm |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		perm |= fs.ModeSticky
	}
	switch m & 0o170000 {
	case 0o040000:
		return perm | fs.ModeDir
	case 0o120000:
		return perm | fs.ModeSymlink
	case 0o020000:
		return perm | fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		return perm | fs.ModeDevice
	case 0o010000:
		return perm | fs.ModeNamedPipe
	case 0o140000:
		return perm | fs.ModeSocket
	}
	return perm
}

// InspectKernel lists the initrd of a kernel+initrd pair, finds an embedded root key
// (etc/pre-nixos/root_key.pub or pre_nixos/root_key.pub) and the unit files, and reads
// the kernel's version string from its bzImage header.
func InspectKernel(ctx context.Context, kernel, initrd string) (*Report, error) {
	rep := &Report{Image: kernel, Kind: "kernel"}
	if kernel != "" {
		v, err := KernelVersion(kernel)
		if err != nil {
			rep.Problems = append(rep.Problems, err.Error())
		}
		rep.Label = v
	}
	if initrd == "" {
		return rep, nil
	}
	f, err := os.Open(initrd)
	if err != nil {
		return nil, fmt.Errorf("opening initrd: %w", err)
	}
	defer f.Close()
	err = ReadInitrd(ctx, f, func(e CPIOEntry, data io.Reader) error {
		rep.Files = append(rep.Files, File{Layer: "initrd", Path: e.Name, Size: e.Size, Mode: e.Mode, Link: e.Link})
		if e.Mode.IsRegular() && (e.Name == SquashfsKeyPath || e.Name == ISOKeyName || strings.HasSuffix(e.Name, "/"+ISOKeyName)) {
			b, err := io.ReadAll(io.LimitReader(data, 64<<10))
			if err != nil {
				return fmt.Errorf("reading %s: %w", e.Name, err)
			}
			line := firstKeyLine(string(b))
			fp, err := KeyFingerprint(line)
			if err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("initrd %s: %v", e.Name, err))
				return nil
			}
			rep.Keys = append(rep.Keys, Key{Layer: "initrd", Path: e.Name, Line: line, Fingerprint: fp})
		}
		return nil
	})
	if err != nil {
		// Entries read before the damage are still worth showing.
		rep.Problems = append(rep.Problems, fmt.Sprintf("initrd %s: %v", initrd, err))
		if len(rep.Files) == 0 {
			return nil, fmt.Errorf("reading initrd %s: %w", initrd, err)
		}
	}
	rep.finish()
	return rep, nil
}

// KernelVersion reads the version string of an x86 bzImage ("6.1.0-27-amd64 (debian-
// kernel@lists.debian.org) #1 SMP ..."), from the setup header's kernel_version
// pointer. A file without the "HdrS" magic is reported as not a bzImage.
func KernelVersion(kernel string) (string, error) {
	f, err := os.Open(kernel)
	if err != nil {
		return "", fmt.Errorf("kernel version: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return "", fmt.Errorf("kernel version of %s: %w", kernel, err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("kernel version of %s: not a bzImage (no HdrS magic)", kernel)
	}
	ptr := binary.LittleEndian.Uint16(hdr[0x20e:])
	if ptr == 0 {
		return "", fmt.Errorf("kernel version of %s: header has no version pointer", kernel)
	}
	buf := make([]byte, 256)
	n, err := f.ReadAt(buf, int64(ptr)+0x200)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("kernel version of %s: %w", kernel, err)
	}
	buf = buf[:n]
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	return string(buf), nil
}
