package isoinspect

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// makeSquashfs builds a small squashfs with mksquashfs: files small enough to share
// fragments, one spanning blocks, a directory and a symlink, so every table a live
// root has (inode, directory, fragment, export, id) is there.
func makeSquashfs(t *testing.T, comp string) []byte {
	t.Helper()
	need(t, "mksquashfs", "squashfs-tools")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "etc", "pre-nixos"), 0o755))
	for i := 0; i < 20; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(src, "etc", fmt.Sprintf("f%02d", i)), []byte(strings.Repeat("x", 100*i)), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(src, "etc", "big"), bytes.Repeat([]byte("0123456789abcdef"), 20000), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, SquashfsKeyPath), []byte("ssh-ed25519 AAAA x\n"), 0o644))
	require.NoError(t, os.Symlink("pre-nixos", filepath.Join(src, "etc", "link")))
	// Extended attributes (a live root's binaries carry capabilities), so the xattr
	// table is there too: two distinct sets.
	require.NoError(t, syscall.Setxattr(filepath.Join(src, "etc", "f01"), "user.bootlab", []byte("one"), 0))
	require.NoError(t, syscall.Setxattr(filepath.Join(src, "etc", "big"), "user.bootlab", []byte("two"), 0))
	out := filepath.Join(dir, "fs.squashfs")
	run(t, dir, "mksquashfs", src, out, "-noappend", "-comp", comp, "-b", "4096", "-quiet", "-no-progress")
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return b
}

// Real squashfs images pass the check and are then read by go-diskfs.
func TestSquashfsRealImagesPass(t *testing.T) {
	for _, comp := range []string{"gzip", "xz", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			img := makeSquashfs(t, comp)
			require.NoError(t, checkSquashfs(bytes.NewReader(img), int64(len(img))))
			sb := parseSqSuperblock(img)
			require.NotZero(t, sb.fragments, "the image has fragments, so the fragment check ran")
			require.NotEqual(t, sqInvalid, sb.exportTable, "the image is exportable, so the export check ran")
			require.NotEqual(t, sqInvalid, sb.xattrTable, "the image has xattrs, so the xattr check ran")
			// The layer may be longer than bytes_used (the ISO pads it to a sector).
			padded := append(append([]byte(nil), img...), make([]byte, 4096)...)
			require.NoError(t, checkSquashfs(bytes.NewReader(padded), int64(len(padded))))
			p := filepath.Join(t.TempDir(), "fs.squashfs")
			require.NoError(t, os.WriteFile(p, img, 0o644))
			f, err := os.Open(p)
			require.NoError(t, err)
			defer f.Close()
			sq, err := squashfs.Read(file.New(f, true), int64(len(img)), 0, 0)
			require.NoError(t, err)
			key, err := readSquashFile(sq, SquashfsKeyPath, MaxKeyFile)
			require.NoError(t, err)
			assert.Equal(t, "ssh-ed25519 AAAA x\n", string(key))
		})
	}
}

func put32(off int, v uint32) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v) }
}
func put16(off int, v uint16) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint16(b[off:], v) }
}
func put64(off int, v uint64) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint64(b[off:], v) }
}

// index64 points entry i of the index of the table whose start is at superblock
// offset field at v.
func index64(field, i int, v uint64) func([]byte) {
	return func(b []byte) {
		at := int(binary.LittleEndian.Uint64(b[field:]))
		binary.LittleEndian.PutUint64(b[at+8*i:], v)
	}
}

// hostileSquashfs are mutations of a real image, each a claim no honest image makes,
// with the words the refusal must say.
var hostileSquashfs = []struct {
	name, want string
	mutate     func([]byte)
}{
	{"magic", "magic 0x73717369", put32(0, 0x73717369)},
	{"version", "version 3.0", put16(28, 3)},
	{"block size not a power of two", "block_size 12288", put32(12, 12288)},
	{"block size too large", "block_size 2097152", func(b []byte) { put32(12, 1<<21)(b); put16(22, 21)(b) }},
	{"block size zero", "block_size 0", put32(12, 0)},
	{"block_log", "block_log 17 for block_size 4096", put16(22, 17)},
	{"compressor", "compressor 7", put16(20, 7)},
	{"bytes_used past the layer", "bytes_used 4294967296", put64(40, 1<<32)},
	{"no inodes", "inode count 0", put32(4, 0)},
	{"inodes past the cap", "inode count 4294967295", put32(4, ^uint32(0))},
	{"inodes past the table", "inode count 16777216, more than the", put32(4, 1<<24)},
	{"no ids", "id count 0", put16(26, 0)},
	{"fragments past the cap", "fragment count 4294967295", put32(16, ^uint32(0))},
	{"fragments past the inodes", "more than its", func(b []byte) { put32(16, binary.LittleEndian.Uint32(b[4:])+1)(b) }},
	{"inode table past the end", "inode_table_start 1099511627776", put64(64, 1<<40)},
	{"inode table in the superblock", "inode_table_start 10", put64(64, 10)},
	{"directory table before the inode table", "directory_table_start 100 not after", put64(72, 100)},
	{"directory table past the end", "directory_table_start 1099511627776", put64(72, 1<<40)},
	{"id table past the end", "id table: its 8-byte index at 1099511627776", put64(48, 1<<40)},
	{"id table absent", "id table: its 8-byte index at 18446744073709551615", put64(48, sqInvalid)},
	{"id block pointing far away", "id table: index entry 0 points at 1099511627776", index64(48, 0, 1<<40)},
	{"id block pointing back", "id table: index entry 0 points at 0", index64(48, 0, 0)},
	{"fragment table past the end", "fragment table: its 8-byte index at 1099511627776", put64(80, 1<<40)},
	{"fragment block pointing far away", "fragment table: index entry 0 points at 1099511627776", index64(80, 0, 1<<40)},
	{"export table past the end", "export table: its 8-byte index at 1099511627776", put64(88, 1<<40)},
	{"export block pointing back", "export table: index entry 0 points at 96", index64(88, 0, 96)},
	{"xattr table past the end", "xattr table: its header at 1099511627776", put64(56, 1<<40)},
	{"xattr table in the id table", "xattr table: 0 ids", func(b []byte) {
		// A header of zeros where the superblock says the xattr table is.
		at := binary.LittleEndian.Uint64(b[48:])
		put64(56, at-16)(b)
		copy(b[at-16:at], make([]byte, 16))
	}},
	{"xattr ids past the index cap", "xattr id table: 68719476720 bytes of entries", func(b []byte) {
		at := binary.LittleEndian.Uint64(b[56:])
		if at == sqInvalid || at+24 > uint64(len(b)) { // a seed without xattrs
			return
		}
		binary.LittleEndian.PutUint32(b[at+8:], ^uint32(0))
	}},
	{"xattr key/value blocks after the id blocks", "xattr table: key/value blocks at", func(b []byte) {
		at := binary.LittleEndian.Uint64(b[56:])
		if at == sqInvalid || at+24 > uint64(len(b)) { // a seed without xattrs
			return
		}
		copy(b[at:at+8], b[at+16:at+24])
	}},
	{"xattr key/value blocks in the superblock", "xattr table: key/value blocks at 0,", func(b []byte) {
		at := binary.LittleEndian.Uint64(b[56:])
		if at == sqInvalid || at+24 > uint64(len(b)) { // a seed without xattrs
			return
		}
		binary.LittleEndian.PutUint64(b[at:], 0)
	}},
	{"xattr id block pointing back", "xattr id table: index entry 0 points at 96", func(b []byte) {
		at := binary.LittleEndian.Uint64(b[56:])
		if at == sqInvalid || at+24 > uint64(len(b)) { // a seed without xattrs
			return
		}
		binary.LittleEndian.PutUint64(b[at+16:], 96)
	}},
	{"directory table after the fragment blocks", "fragment table: index entry 0 points at", func(b []byte) {
		put64(72, binary.LittleEndian.Uint64(b[80:])-1)(b)
	}},
}

// Each hostile claim is refused, in milliseconds, with ErrHostile and one line that
// names the field and the claim.
func TestSquashfsHostileClaims(t *testing.T) {
	base := makeSquashfs(t, "gzip")
	for _, c := range hostileSquashfs {
		t.Run(c.name, func(t *testing.T) {
			img := append([]byte(nil), base...)
			c.mutate(img)
			start := time.Now()
			err := checkSquashfs(bytes.NewReader(img), int64(len(img)))
			took := time.Since(start)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrHostile), "%v", err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "\n")
			assert.Less(t, took, 50*time.Millisecond)
		})
	}
	// A layer shorter than a superblock.
	err := checkSquashfs(bytes.NewReader(base[:40]), 40)
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), "superblock: 40-byte layer")
}

// FuzzSquashfsSuperblock feeds the check mutated headers of real images: what it
// accepts, go-diskfs must read without panicking or allocating past a bound.
func FuzzSquashfsSuperblock(f *testing.F) {
	dir := f.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		if err := os.WriteFile(filepath.Join(src, "etc", fmt.Sprint(i)), bytes.Repeat([]byte{'a' + byte(i)}, 300*i), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	for _, comp := range []string{"gzip", "zstd"} {
		out := filepath.Join(dir, comp+".squashfs")
		if b, err := execOutput("mksquashfs", src, out, "-noappend", "-comp", comp, "-b", "4096", "-quiet", "-no-progress"); err != nil {
			f.Fatalf("mksquashfs: %v\n%s", err, b)
		}
		img, err := os.ReadFile(out)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(img)
		for _, c := range hostileSquashfs {
			m := append([]byte(nil), img...)
			c.mutate(m)
			f.Add(m)
		}
	}
	f.Fuzz(func(t *testing.T, img []byte) {
		if checkSquashfs(bytes.NewReader(img), int64(len(img))) != nil {
			return
		}
		sb := parseSqSuperblock(img)
		if sb.bytesUsed > uint64(len(img)) || sb.fragments > sqMaxFragments || sb.inodes > sqMaxInodes {
			t.Fatalf("accepted %+v for %d bytes", sb, len(img))
		}
		// What is accepted, go-diskfs reads through the bounded storage as
		// inspectLayer has it (a panic is recovered there too), within a bound.
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_ = safely(func() error {
			sq, err := squashfs.Read(newSqBoundedStorage(file.New(memFile{bytes.NewReader(img)}, true), 0, int64(len(img)), sb), int64(len(img)), 0, 0)
			if err != nil {
				return err
			}
			_, err = walk(context.Background(), sq, "")
			return err
		})
		runtime.ReadMemStats(&after)
		if a := after.TotalAlloc - before.TotalAlloc; a > 256<<20 {
			t.Fatalf("reading an accepted %d-byte image allocated %d MiB", len(img), a>>20)
		}
	})
}

// memFile is an in-memory fs.File with ReadAt, for go-diskfs's file backend.
type memFile struct{ *bytes.Reader }

func (memFile) Stat() (fs.FileInfo, error) { return nil, errors.New("no stat") }
func (memFile) Close() error               { return nil }

func execOutput(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
