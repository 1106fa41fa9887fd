package isoinspect

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bootlab/bootlab/artifacts/isoinspect/isotest"
	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hostile images are written byte by byte with isotest; the root is at sector 18.
const rootSector = 18

// bounded runs fn and fails when it allocated more than max bytes in total (not just
// at the end: TotalAlloc counts every allocation, so a huge buffer freed again still
// shows).
func bounded(t *testing.T, max uint64, fn func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	fn()
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d KiB in %v", alloc>>10, time.Since(start))
	assert.LessOrEqual(t, alloc, max, "inspection allocated more than the bound")
}

// Issue 19 item 7: a 3.75 GiB root_key.pub claimed in a tiny image took RootKey to
// 13.4 GB of memory. Now the walk refuses a file that runs past the end of the image
// before any buffer exists (issue 24: every file listed lies inside the image).
func TestHostileISOHugeKeyClaim(t *testing.T) {
	b := isotest.New("HOSTILE")
	pn := b.Alloc(1)
	data := b.Alloc(1)
	b.Dir(pn, rootSector, isotest.Record([]byte("ROOT_KEY.PUB;1"), data, 0xF0000000, false, nil))
	b.Dir(rootSector, rootSector, isotest.Record([]byte("PRE_NIXOS"), pn, isoSector, true, nil))
	iso := b.Write(t, "hostile.iso")
	var err error
	bounded(t, 8<<20, func() { _, err = RootKey(context.Background(), iso) })
	require.Error(t, err)
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), "/pre_nixos/root_key.pub: its 4026531840 bytes at byte 40960 run past the end of the 43008-byte image")
}

// A key file inside the image but larger than any key is refused by its size before
// it is read.
func TestHostileISOKeyOverTheCap(t *testing.T) {
	b := isotest.New("HOSTILE")
	pn := b.Alloc(1)
	b.Dir(pn, rootSector, b.File("ROOT_KEY.PUB;1", bytes.Repeat([]byte("x"), MaxKeyFile+1)))
	b.Dir(rootSector, rootSector, isotest.Record([]byte("PRE_NIXOS"), pn, isoSector, true, nil))
	_, err := RootKey(context.Background(), b.Write(t, "hostile.iso"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "claims 65537 bytes, more than the 65536 a key file may have")
}

// A key under the cap whose extent runs past the end of the image is refused by the
// walk (the size is checked against the real file, not the image's claims).
func TestHostileISOKeyPastTheEnd(t *testing.T) {
	b := isotest.New("HOSTILE")
	pn := b.Alloc(1)
	b.Dir(pn, rootSector, isotest.Record([]byte("ROOT_KEY.PUB;1"), 5000, 1000, false, nil))
	b.Dir(rootSector, rootSector, isotest.Record([]byte("PRE_NIXOS"), pn, isoSector, true, nil))
	_, err := RootKey(context.Background(), b.Write(t, "hostile.iso"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "its 1000 bytes at byte 10240000 run past the end of the 40960-byte image")
}

// Forty directories whose extents overlap (each starts one sector after the last and
// is 16 sectors long): every one is distinct, so the loop guard passes them, but
// together they would read the same bytes again and again; what is read of an image
// cannot add up to more than the image.
func TestHostileISOOverlappingDirectories(t *testing.T) {
	b := isotest.New("HOSTILE")
	d := b.Alloc(60)
	var recs [][]byte
	for i := uint32(0); i < 40; i++ {
		recs = append(recs, isotest.Record([]byte{'A' + byte(i/26), 'A' + byte(i%26)}, d+i, 16*isoSector, true, nil))
	}
	b.Dir(rootSector, rootSector, recs...)
	iso := b.Write(t, "hostile.iso")
	var err error
	bounded(t, 8<<20, func() { _, err = InspectISO(context.Background(), iso) })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "would read more than the")
}

// A directory of 32 MiB inside a 40 MiB image: within the image, but no real
// directory is that large, and it would be read into memory whole.
func TestHostileISOLargeDirectoryInsideTheImage(t *testing.T) {
	b := isotest.New("HOSTILE")
	d := b.Alloc(1)
	b.Dir(rootSector, rootSector, isotest.Record([]byte("BIG"), d, 32<<20, true, nil))
	iso := b.Write(t, "hostile.iso")
	require.NoError(t, os.Truncate(iso, 40<<20))
	var err error
	bounded(t, 8<<20, func() { _, err = InspectISO(context.Background(), iso) })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "claims 33554432 bytes, more than the 16777216 any image needs")
}

// A directory that points back at the root: each directory extent is read once.
func TestHostileISODirectoryLoop(t *testing.T) {
	b := isotest.New("HOSTILE")
	sub := b.Alloc(1)
	b.Dir(sub, rootSector, isotest.Record([]byte("BACK"), rootSector, isoSector, true, nil))
	b.Dir(rootSector, rootSector, isotest.Record([]byte("SUB"), sub, isoSector, true, nil))
	iso := b.Write(t, "hostile.iso")
	var err error
	bounded(t, 8<<20, func() { _, err = RootKey(context.Background(), iso) })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "directory loop: /sub/back points back at sector 18")
}

// A chain of distinct directories deeper than any image: ends at the depth cap.
func TestHostileISODeepChain(t *testing.T) {
	b := isotest.New("HOSTILE")
	const n = isoMaxDepth + 10
	first := b.Alloc(n)
	for i := uint32(0); i < n; i++ {
		parent := first + i - 1
		if i == 0 {
			parent = rootSector
		}
		var recs [][]byte
		if i+1 < n {
			recs = append(recs, isotest.Record([]byte("D"), first+i+1, isoSector, true, nil))
		}
		b.Dir(first+i, parent, recs...)
	}
	b.Dir(rootSector, rootSector, isotest.Record([]byte("D"), first, isoSector, true, nil))
	_, err := InspectISO(context.Background(), b.Write(t, "hostile.iso"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nested deeper than 64")
}

func TestHostileISOTooManyEntries(t *testing.T) {
	defer func(n int) { isoMaxEntries = n }(isoMaxEntries)
	isoMaxEntries = 10
	b := isotest.New("HOSTILE")
	var recs [][]byte
	for i := 0; i < 20; i++ {
		recs = append(recs, b.File(string(rune('A'+i))+";1", []byte("x")))
	}
	b.Dir(rootSector, rootSector, recs...)
	_, err := InspectISO(context.Background(), b.Write(t, "hostile.iso"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than 10 entries")
}

// A Rock Ridge continuation area that continues into itself.
func TestHostileISOContinuationLoop(t *testing.T) {
	b := isotest.New("HOSTILE")
	ce := b.Alloc(1)
	ceEntry := make([]byte, 28)
	copy(ceEntry, "CE")
	ceEntry[2], ceEntry[3] = 28, 1
	binary.LittleEndian.PutUint32(ceEntry[4:], ce)
	binary.LittleEndian.PutUint32(ceEntry[12:], 0)
	binary.LittleEndian.PutUint32(ceEntry[20:], 28)
	copy(b.Img[int(ce)*isoSector:], ceEntry)
	sp := []byte{'S', 'P', 7, 1, 0xBE, 0xEF, 0}
	rootDot := isotest.Record([]byte{0}, rootSector, isoSector, true, sp)
	d := append(rootDot, isotest.Record([]byte{1}, rootSector, isoSector, true, nil)...)
	d = append(d, isotest.Record([]byte("F;1"), ce, 1, false, ceEntry)...)
	copy(b.Img[rootSector*isoSector:], d)
	copy(b.Img[16*isoSector+156:], isotest.Record([]byte{0}, rootSector, isoSector, true, nil))
	_, err := InspectISO(context.Background(), b.Write(t, "hostile.iso"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than 16 Rock Ridge continuation areas")
}

// A squashfs layer whose extent runs past the end of the image: the walk refuses it
// before the squashfs reader sees it.
func TestHostileISOLayerPastTheEnd(t *testing.T) {
	b := isotest.New("HOSTILE")
	data := b.Alloc(1)
	b.Dir(rootSector, rootSector, isotest.Record([]byte("ROOT.SQUASHFS;1"), data, 1<<30, false, nil))
	_, err := InspectISO(context.Background(), b.Write(t, "hostile.iso"))
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), "/root.squashfs: its 1073741824 bytes at byte 38912 run past the end of the")
}

// Inspection has a deadline of its own (RootKey runs before every boot), and stops
// when its context ends.
func TestInspectionDeadline(t *testing.T) {
	b := isotest.New("SLOW")
	b.Dir(rootSector, rootSector, b.File("README;1", []byte("x")))
	iso := b.Write(t, "hostile.iso")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := InspectISO(ctx, iso)
	require.ErrorIs(t, err, context.Canceled)

	defer func(d time.Duration) { RootKeyTimeout = d }(RootKeyTimeout)
	RootKeyTimeout = time.Nanosecond
	_, err = RootKey(context.Background(), iso)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// The squashfs reader is a library that checks no context: a layer on which it never
// returns must still end at the deadline.
func TestInspectionDeadlineCoversAStuckSquashfsReader(t *testing.T) {
	defer func(r func(backend.Storage, int64, int64, int64) (*squashfs.FileSystem, error)) { readSquashfs = r }(readSquashfs)
	release, returned := make(chan struct{}), make(chan struct{})
	defer func() { close(release); <-returned }() // the stuck reader ends before the swap back
	readSquashfs = func(backend.Storage, int64, int64, int64) (*squashfs.FileSystem, error) {
		defer close(returned)
		<-release
		return nil, errors.New("released")
	}
	defer func(d time.Duration) { RootKeyTimeout = d }(RootKeyTimeout)
	RootKeyTimeout = 200 * time.Millisecond
	b := isotest.New("STUCK")
	b.Dir(rootSector, rootSector, b.File("ROOT.SQUASHFS;1", []byte("hsqs")))
	_, err := RootKey(context.Background(), b.Write(t, "hostile.iso"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "root.squashfs")
}

func TestSafelyTurnsAPanicIntoAnError(t *testing.T) {
	err := safely(func() error { panic("index out of range") })
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrHostile))
	assert.Contains(t, err.Error(), "index out of range")
}

// Names, labels and key comments come from whoever built the image; printed raw, an
// escape sequence could rewrite the fingerprint line on the terminal.
func TestHostileNamesArePrintedEscaped(t *testing.T) {
	key := newKey(t, "admin\x1b[1A\x1b[2Kroot key fingerprint: SHA256:forged")
	b := isotest.New("EVIL\x1b]0;x\x07")
	pn := b.Alloc(1)
	b.Dir(pn, rootSector, b.File("ROOT_KEY.PUB;1", []byte(key+"\n")))
	b.Dir(rootSector, rootSector,
		isotest.Record([]byte("PRE_NIXOS"), pn, isoSector, true, nil),
		b.File("\x1b[2J\x9b31m\\;1", []byte("x")))
	rep, err := InspectISO(context.Background(), b.Write(t, "hostile.iso"))
	require.NoError(t, err)
	require.NotNil(t, rep.RootKey)
	var out bytes.Buffer
	require.NoError(t, rep.WriteText(&out, true))
	txt := out.String()
	for i, c := range []byte(txt) {
		if (c < 0x20 && c != '\n') || c == 0x7f || c >= 0x80 {
			t.Fatalf("byte %#x at %d printed raw:\n%q", c, i, txt)
		}
	}
	assert.Contains(t, txt, `root key: `+strings.Fields(key)[0]+" "+strings.Fields(key)[1]+` admin\x1b[1A\x1b[2Kroot`)
	assert.Contains(t, txt, `/\x1b[2j\x9b31m\\`)
	assert.Equal(t, "a\\x07b\\\\c\\u202eé", Printable("a\x07b\\c\u202eé"))
}

// The fuzz targets' input is dense: its 256-byte chunks are the starts of sectors 16,
// 17, ... (volume descriptors, directories, path tables, the boot catalog and small
// files use no more of a sector), after the 32 KiB system area that is never read. A
// 45 KiB image as input made the fuzzer spend its time minimising.
const fuzzChunk = 256

func denseSeed(img []byte) []byte {
	var seed []byte
	for s := 16 * isoSector; s < len(img); s += isoSector {
		seed = append(seed, img[s:s+fuzzChunk]...)
	}
	return seed
}

func denseImage(in []byte) []byte {
	data := make([]byte, (16+(len(in)+fuzzChunk-1)/fuzzChunk)*isoSector)
	for i := 0; i*fuzzChunk < len(in); i++ {
		copy(data[(16+i)*isoSector:], in[i*fuzzChunk:min(len(in), (i+1)*fuzzChunk)])
	}
	return data
}

// fuzzSeeds are small images with each structure the reader parses: Rock Ridge
// keys and a layer, Joliet names, an El Torito catalog with a BIOS and an EFI entry,
// and a path table.
func fuzzSeeds() [][]byte {
	b := isotest.New("SEED")
	pn := b.Alloc(1)
	b.Dir(pn, rootSector, b.File("ROOT_KEY.PUB;1", []byte("ssh-ed25519 AAAA x\n")))
	b.Dir(rootSector, rootSector, isotest.Record([]byte("PRE_NIXOS"), pn, isoSector, true, nil), b.File("A.SQUASHFS;1", []byte("hsqs")))
	b.PathTable(isotest.PathRecord{Extent: rootSector, Parent: 1}, isotest.PathRecord{Extent: pn, Parent: 1, Name: "PRE_NIXOS"})
	return [][]byte{denseSeed(b.Bytes()), denseSeed(jolietImage().Bytes()), denseSeed(elToritoImage().Bytes())}
}

// FuzzReadISO feeds the tree walk arbitrary images: it must not panic, and whatever
// it lists must lie inside the image.
func FuzzReadISO(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		data := denseImage(in)
		img, err := readISO(context.Background(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if len(img.Entries) > isoMaxEntries {
			t.Fatalf("%d entries", len(img.Entries))
		}
		if img.read > int64(len(data))+readSlack {
			t.Fatalf("read %d bytes of a %d-byte image", img.read, len(data))
		}
		for _, e := range img.Entries {
			if e.Mode.IsRegular() {
				if e.Offset+e.Size > int64(len(data)) {
					t.Fatalf("%s: %d bytes at %d listed in a %d-byte image", e.Path, e.Size, e.Offset, len(data))
				}
				if b, err := img.readFile(e, MaxKeyFile); err == nil && int64(len(b)) != e.Size {
					t.Fatalf("%s: read %d bytes of %d", e.Path, len(b), e.Size)
				}
			}
		}
		for _, bi := range img.Boot {
			if int64(bi.Sector)*isoSector >= int64(len(data)) {
				t.Fatalf("boot image at sector %d of a %d-byte image", bi.Sector, len(data))
			}
		}
	})
}

// FuzzISOFS reads fuzzed images through the fs.FS every other package uses (boot
// menus, kernel extraction, the fixture's checks): walking, stat, readdir, symlinks
// and file reads must not panic, and a file reads exactly its size.
func FuzzISOFS(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		data := denseImage(in)
		iso, err := NewISO(context.Background(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		_ = fs.WalkDir(iso, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			st, err := iso.Stat(p) // follows links
			if err != nil {
				return nil
			}
			if st.Mode().IsRegular() {
				f, err := iso.Open(p)
				if err != nil {
					t.Fatalf("%s: stat but no open: %v", p, err)
				}
				n, err := io.Copy(io.Discard, f)
				if err != nil || n != st.Size() {
					t.Fatalf("%s: read %d bytes of %d (%v)", p, n, st.Size(), err)
				}
				if _, err := iso.ReadFileMax(p, 4096); err != nil && st.Size() <= 4096 {
					t.Fatalf("%s: %v", p, err)
				}
			}
			if st.IsDir() {
				if _, err := iso.ReadDir(p); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
			}
			return nil
		})
	})
}

// FuzzBootCatalog feeds the El Torito catalog reader arbitrary catalogs (up to the
// eight sectors it reads) in an otherwise honest image.
func FuzzBootCatalog(f *testing.F) {
	base := elToritoImage()
	cat := int(binary.LittleEndian.Uint32(base.VD(1)[71:]))
	f.Add(append([]byte(nil), base.Img[cat*isoSector:cat*isoSector+128]...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > isoMaxCatalog*isoSector {
			return
		}
		b := elToritoImage()
		b.Alloc(isoMaxCatalog)
		copy(b.Img[cat*isoSector:], make([]byte, isoMaxCatalog*isoSector))
		copy(b.Img[cat*isoSector:], in)
		data := b.Bytes()
		img, err := readISO(context.Background(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, bi := range img.Boot {
			if int64(bi.Sector)*isoSector+int64(bi.Sectors)*512 > int64(len(data)) {
				t.Fatalf("boot image of %d sectors at %d in a %d-byte image", bi.Sectors, bi.Sector, len(data))
			}
		}
	})
}

// FuzzPathTable feeds the path table check arbitrary tables in an otherwise honest
// image; an accepted table's records all name an earlier parent.
func FuzzPathTable(f *testing.F) {
	seed := isotest.New("PT")
	seed.Dir(seed.Root, seed.Root)
	seed.PathTable(isotest.PathRecord{Extent: rootSector, Parent: 1}, isotest.PathRecord{Extent: rootSector, Parent: 1, Name: "A"})
	ls := int(binary.LittleEndian.Uint32(seed.VD(0)[140:]))
	f.Add(append([]byte(nil), seed.Img[ls*isoSector:ls*isoSector+24]...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 4*isoSector {
			return
		}
		b := isotest.New("PT")
		b.Dir(b.Root, b.Root)
		s := b.Alloc(4)
		copy(b.Img[int(s)*isoSector:], in)
		binary.LittleEndian.PutUint32(b.VD(0)[132:], uint32(len(in)))
		binary.LittleEndian.PutUint32(b.VD(0)[140:], s)
		data := b.Bytes()
		if _, err := readISO(context.Background(), bytes.NewReader(data), int64(len(data))); err != nil {
			return
		}
		n := 0
		for pos := 0; pos < len(in) && in[pos] != 0; {
			l := int(in[pos])
			n++
			if p := int(binary.LittleEndian.Uint16(in[pos+6:])); p < 1 || p > n || (n > 1 && p == n) {
				t.Fatalf("record %d with parent %d accepted", n, p)
			}
			pos += 8 + l + l%2
		}
	})
}
