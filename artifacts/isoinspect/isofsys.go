package isoinspect

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"
)

// ISO is an image opened through the bounded ISO9660 reader (see isofs.go). It is an
// fs.FS with ReadDir and Stat, so the boot menu parsers, the kernel and initrd
// extraction of a direct boot and the fixture's checks read it like any tree; symlinks
// (Rock Ridge) are followed inside the image, at most isoMaxLinkHops per path. File
// data is streamed from the image, never read whole.
type ISO struct {
	img *isoImage
	f   *os.File // nil when read from a ReaderAt
}

// OpenISO opens and checks the ISO at isoPath: its volume descriptors, path tables,
// directory tree and boot catalog are read (bounded by the file's real size) before
// it returns. An error wrapping ErrHostile is an image no honest tool writes.
func OpenISO(ctx context.Context, isoPath string) (*ISO, error) {
	f, err := os.Open(isoPath)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", isoPath, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening %s: %w", isoPath, err)
	}
	img, err := readISO(ctx, f, st.Size())
	if err != nil {
		f.Close()
		if ctx.Err() != nil {
			return nil, printableError{fmt.Errorf("reading %s: %w", isoPath, err)}
		}
		return nil, printableError{fmt.Errorf("%s is not a readable ISO9660 image: %w", isoPath, err)}
	}
	return &ISO{img: img, f: f}, nil
}

// printableError shows an error through Printable: its message names entries of the
// image, whose names are whoever built it chose, and goes to a terminal.
type printableError struct{ err error }

func (e printableError) Error() string { return Printable(e.err.Error()) }
func (e printableError) Unwrap() error { return e.err }

// NewISO reads an ISO of size bytes from r, as OpenISO does.
func NewISO(ctx context.Context, r io.ReaderAt, size int64) (*ISO, error) {
	img, err := readISO(ctx, r, size)
	if err != nil {
		return nil, printableError{err}
	}
	return &ISO{img: img}, nil
}

// Close closes the image file (an ISO from NewISO has none).
func (iso *ISO) Close() error {
	if iso.f == nil {
		return nil
	}
	return iso.f.Close()
}

// Label is the volume label of the primary descriptor.
func (iso *ISO) Label() string { return strings.TrimSpace(iso.img.Label) }

// Names says which names the tree shows: "rock ridge", "joliet" or "iso9660".
func (iso *ISO) Names() string { return iso.img.Names }

// BootImages are the El Torito boot catalog's entries (none without a boot record).
func (iso *ISO) BootImages() []BootImage { return iso.img.Boot }

// resolve finds name's entry (-1: the root), following symlinks in every component
// and, with follow, in the last.
func (iso *ISO) resolve(op, name string, follow bool) (int, error) {
	if !fs.ValidPath(name) {
		return 0, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	var parts []string
	if name != "." {
		parts = strings.Split(name, "/")
	}
	cur, idx, hops := "", -1, 0
	for len(parts) > 0 {
		p := parts[0]
		parts = parts[1:]
		switch p {
		case "", ".":
			continue
		case "..":
			// Only symlink targets have these (fs.ValidPath refuses them in names);
			// above the root is the root, as in the kernel.
			if cur != "" {
				cur = path.Dir(cur)
				if cur == "." {
					cur = ""
				}
			}
			idx = -1
			if cur != "" {
				idx = iso.img.index[cur]
			}
			continue
		}
		e, ok := iso.img.lookup(path.Join(cur, p))
		if !ok {
			return 0, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if e.Mode&fs.ModeSymlink != 0 && (len(parts) > 0 || follow) {
			if hops++; hops > isoMaxLinkHops {
				return 0, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%w: more than %d symlinks", ErrHostile, isoMaxLinkHops)}
			}
			if strings.HasPrefix(e.Link, "/") {
				cur, idx = "", -1
			}
			parts = append(strings.Split(e.Link, "/"), parts...)
			continue
		}
		if len(parts) > 0 && !e.Mode.IsDir() {
			return 0, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%s is not a directory", e.Path)}
		}
		cur, idx = e.Path, iso.img.index[e.Path]
	}
	return idx, nil
}

var rootEntry = isoEntry{Path: ".", Mode: fs.ModeDir | 0o555}

func (iso *ISO) entry(idx int) isoEntry {
	if idx < 0 {
		return rootEntry
	}
	return iso.img.Entries[idx]
}

// Open implements fs.FS.
func (iso *ISO) Open(name string) (fs.File, error) {
	idx, err := iso.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	e := iso.entry(idx)
	f := &isoFile{iso: iso, idx: idx, e: e}
	if e.Mode.IsRegular() {
		// The walk checked that the extent lies inside the image.
		f.sr = io.NewSectionReader(iso.img.r, e.Offset, e.Size)
	}
	return f, nil
}

// Stat implements fs.StatFS (following symlinks, as os.Stat does).
func (iso *ISO) Stat(name string) (fs.FileInfo, error) {
	idx, err := iso.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return isoInfo(iso.entry(idx)), nil
}

// ReadDir implements fs.ReadDirFS: the directory's entries sorted by name.
func (iso *ISO) ReadDir(name string) ([]fs.DirEntry, error) {
	idx, err := iso.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	return iso.readDir(name, idx)
}

func (iso *ISO) readDir(name string, idx int) ([]fs.DirEntry, error) {
	e := iso.entry(idx)
	if !e.Mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fmt.Errorf("not a directory")}
	}
	dir := e.Path
	if idx < 0 {
		dir = ""
	}
	var out []fs.DirEntry
	for _, i := range iso.img.children[dir] {
		out = append(out, fs.FileInfoToDirEntry(isoInfo(iso.img.Entries[i])))
	}
	return out, nil
}

// Extent returns where a regular file's data lies in the image: inside it, as the
// walk checked.
func (iso *ISO) Extent(name string) (off, size int64, err error) {
	idx, err := iso.resolve("extent", name, true)
	if err != nil {
		return 0, 0, err
	}
	e := iso.entry(idx)
	if !e.Mode.IsRegular() {
		return 0, 0, &fs.PathError{Op: "extent", Path: name, Err: fmt.Errorf("not a regular file")}
	}
	return e.Offset, e.Size, nil
}

// ReadFileMax reads a regular file of at most max bytes: a larger one is an error
// before any buffer exists.
func (iso *ISO) ReadFileMax(name string, max int64) ([]byte, error) {
	off, size, err := iso.Extent(name)
	if err != nil {
		return nil, err
	}
	if size > max {
		return nil, fmt.Errorf("/%s is %d bytes, more than the %d expected", name, size, max)
	}
	b := make([]byte, size)
	if _, err := iso.img.r.ReadAt(b, off); err != nil && !(err == io.EOF && size == 0) {
		return nil, fmt.Errorf("reading /%s: %w", name, err)
	}
	return b, nil
}

type isoFile struct {
	iso  *ISO
	idx  int
	e    isoEntry
	sr   *io.SectionReader
	dirs []fs.DirEntry // what ReadDir(n) has not returned yet
	read bool
}

func (f *isoFile) Stat() (fs.FileInfo, error) { return isoInfo(f.e), nil }
func (f *isoFile) Close() error               { return nil }

func (f *isoFile) Read(b []byte) (int, error) {
	if f.sr == nil {
		return 0, &fs.PathError{Op: "read", Path: f.e.Path, Err: fmt.Errorf("not a regular file")}
	}
	return f.sr.Read(b)
}

// ReadAt and Seek let a caller read parts of a large file (a squashfs) in place.
func (f *isoFile) ReadAt(b []byte, off int64) (int, error) {
	if f.sr == nil {
		return 0, &fs.PathError{Op: "read", Path: f.e.Path, Err: fmt.Errorf("not a regular file")}
	}
	return f.sr.ReadAt(b, off)
}

func (f *isoFile) Seek(off int64, whence int) (int64, error) {
	if f.sr == nil {
		return 0, &fs.PathError{Op: "seek", Path: f.e.Path, Err: fmt.Errorf("not a regular file")}
	}
	return f.sr.Seek(off, whence)
}

// ReadDir implements fs.ReadDirFile.
func (f *isoFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !f.read {
		d, err := f.iso.readDir(f.e.Path, f.idx)
		if err != nil {
			return nil, err
		}
		f.dirs, f.read = d, true
	}
	if n <= 0 {
		d := f.dirs
		f.dirs = nil
		return d, nil
	}
	if len(f.dirs) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(f.dirs))
	d := f.dirs[:n]
	f.dirs = f.dirs[n:]
	return d, nil
}

type isoFileInfo struct{ e isoEntry }

func isoInfo(e isoEntry) fs.FileInfo { return isoFileInfo{e} }

func (i isoFileInfo) Name() string       { return path.Base(i.e.Path) }
func (i isoFileInfo) Size() int64        { return i.e.Size }
func (i isoFileInfo) Mode() fs.FileMode  { return i.e.Mode }
func (i isoFileInfo) ModTime() time.Time { return time.Time{} }
func (i isoFileInfo) IsDir() bool        { return i.e.Mode.IsDir() }
func (i isoFileInfo) Sys() any           { return nil }
