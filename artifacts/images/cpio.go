package images

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// cpioEntry is one member of an initramfs. Ownership is always root:root, which is the
// point of writing the archive ourselves: the setuid busybox must be owned by root in
// the guest even when the builder is not root, with no fakeroot involved.
type cpioEntry struct {
	Name    string // relative, no leading slash
	Mode    os.FileMode
	Data    []byte // file content, or the target for a symlink
	UID     int
	GID     int
	DevMaj  uint32
	DevMin  uint32
	charDev bool
}

// cpioTree collects entries by name so later additions (spec.Files) override defaults
// and parent directories are implied.
type cpioTree map[string]*cpioEntry

func (t cpioTree) dir(name string) {
	name = strings.Trim(name, "/")
	if name == "" || name == "." {
		return
	}
	t.dir(path.Dir(name))
	if _, ok := t[name]; !ok {
		t[name] = &cpioEntry{Name: name, Mode: os.ModeDir | 0o755}
	}
}

func (t cpioTree) file(name string, mode os.FileMode, data []byte) {
	name = strings.Trim(name, "/")
	t.dir(path.Dir(name))
	t[name] = &cpioEntry{Name: name, Mode: mode, Data: data}
}

func (t cpioTree) symlink(name, target string) {
	name = strings.Trim(name, "/")
	t.dir(path.Dir(name))
	t[name] = &cpioEntry{Name: name, Mode: os.ModeSymlink | 0o777, Data: []byte(target)}
}

func (t cpioTree) chardev(name string, mode os.FileMode, maj, min uint32) {
	name = strings.Trim(name, "/")
	t.dir(path.Dir(name))
	t[name] = &cpioEntry{Name: name, Mode: os.ModeDevice | os.ModeCharDevice | mode, DevMaj: maj, DevMin: min, charDev: true}
}

// writeCpio writes the tree as a "newc" archive, the format the kernel unpacks. Entries
// are sorted (parents before children) and timestamps zeroed so equal inputs give
// byte-identical archives.
func writeCpio(w io.Writer, t cpioTree) error {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Strings(names)
	ino := uint32(1)
	for _, n := range names {
		e := t[n]
		if err := writeCpioHeader(w, e, ino); err != nil {
			return err
		}
		ino++
	}
	return writeCpioHeader(w, &cpioEntry{Name: "TRAILER!!!"}, 0)
}

func cpioMode(m os.FileMode) uint32 {
	perm := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		perm |= 0o1000
	}
	switch {
	case m&os.ModeDir != 0:
		return 0o040000 | perm
	case m&os.ModeSymlink != 0:
		return 0o120000 | perm
	case m&os.ModeCharDevice != 0:
		return 0o020000 | perm
	case m&os.ModeNamedPipe != 0:
		return 0o010000 | perm
	}
	return 0o100000 | perm
}

func writeCpioHeader(w io.Writer, e *cpioEntry, ino uint32) error {
	nlink := uint32(1)
	if e.Mode&os.ModeDir != 0 {
		nlink = 2
	}
	mode := cpioMode(e.Mode)
	if e.Name == "TRAILER!!!" {
		mode = 0
	}
	name := e.Name + "\x00"
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, e.UID, e.GID, nlink, 0, len(e.Data), 0, 0, e.DevMaj, e.DevMin, len(name), 0)
	buf := make([]byte, 0, len(hdr)+len(name)+len(e.Data)+8)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = pad4(buf)
	buf = append(buf, e.Data...)
	buf = pad4(buf)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("writing cpio entry %s: %w", e.Name, err)
	}
	return nil
}

// pad4 pads to a 4-byte boundary; headers are 110 bytes, so offsets stay relative to the
// start of the archive only because every entry is padded.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
