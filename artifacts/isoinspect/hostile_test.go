package isoinspect

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// isoBuilder writes ISO9660 images byte by byte, so a test can say things no honest
// mastering tool would: sizes larger than the image, directories that point back at
// their ancestors, names with escape sequences.
type isoBuilder struct{ img []byte }

const rootSector = 18

func newISOBuilder(label string) *isoBuilder {
	b := &isoBuilder{img: make([]byte, (rootSector+1)*isoSector)}
	pvd := b.img[16*isoSector:]
	pvd[0], pvd[6] = 1, 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:72], bytes.Repeat([]byte(" "), 32))
	copy(pvd[40:], label)
	binary.LittleEndian.PutUint16(pvd[128:], isoSector)
	binary.BigEndian.PutUint16(pvd[130:], isoSector)
	term := b.img[17*isoSector:]
	term[0], term[6] = 255, 1
	copy(term[1:], "CD001")
	return b
}

// alloc appends n zero sectors and returns the first.
func (b *isoBuilder) alloc(n int) uint32 {
	s := len(b.img) / isoSector
	b.img = append(b.img, make([]byte, n*isoSector)...)
	return uint32(s)
}

func isoRecord(name []byte, extent, size uint32, dir bool, su []byte) []byte {
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

// dir writes a directory of one sector at sector, with "." and "..".
func (b *isoBuilder) dir(sector, parent uint32, recs ...[]byte) {
	d := append(isoRecord([]byte{0}, sector, isoSector, true, nil), isoRecord([]byte{1}, parent, isoSector, true, nil)...)
	for _, r := range recs {
		d = append(d, r...)
	}
	if len(d) > isoSector {
		panic("directory larger than a sector")
	}
	copy(b.img[int(sector)*isoSector:], d)
	if sector == rootSector {
		copy(b.img[16*isoSector+156:], isoRecord([]byte{0}, rootSector, isoSector, true, nil))
	}
}

// file stores data in new sectors and returns its record.
func (b *isoBuilder) file(name string, data []byte) []byte {
	s := b.alloc((len(data) + isoSector - 1) / isoSector)
	copy(b.img[int(s)*isoSector:], data)
	return isoRecord([]byte(name), s, uint32(len(data)), false, nil)
}

func (b *isoBuilder) write(t *testing.T) string {
	t.Helper()
	binary.LittleEndian.PutUint32(b.img[16*isoSector+80:], uint32(len(b.img)/isoSector))
	p := filepath.Join(t.TempDir(), "hostile.iso")
	require.NoError(t, os.WriteFile(p, b.img, 0o644))
	return p
}

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
	b := newISOBuilder("HOSTILE")
	pn := b.alloc(1)
	data := b.alloc(1)
	b.dir(pn, rootSector, isoRecord([]byte("ROOT_KEY.PUB;1"), data, 0xF0000000, false, nil))
	b.dir(rootSector, rootSector, isoRecord([]byte("PRE_NIXOS"), pn, isoSector, true, nil))
	iso := b.write(t)
	var err error
	bounded(t, 8<<20, func() { _, err = RootKey(context.Background(), iso) })
	require.Error(t, err)
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), "/pre_nixos/root_key.pub: its 4026531840 bytes at byte 40960 run past the end of the 43008-byte image")
}

// A key file inside the image but larger than any key is refused by its size before
// it is read.
func TestHostileISOKeyOverTheCap(t *testing.T) {
	b := newISOBuilder("HOSTILE")
	pn := b.alloc(1)
	b.dir(pn, rootSector, b.file("ROOT_KEY.PUB;1", bytes.Repeat([]byte("x"), MaxKeyFile+1)))
	b.dir(rootSector, rootSector, isoRecord([]byte("PRE_NIXOS"), pn, isoSector, true, nil))
	_, err := RootKey(context.Background(), b.write(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "claims 65537 bytes, more than the 65536 a key file may have")
}

// A key under the cap whose extent runs past the end of the image is refused by the
// walk (the size is checked against the real file, not the image's claims).
func TestHostileISOKeyPastTheEnd(t *testing.T) {
	b := newISOBuilder("HOSTILE")
	pn := b.alloc(1)
	b.dir(pn, rootSector, isoRecord([]byte("ROOT_KEY.PUB;1"), 5000, 1000, false, nil))
	b.dir(rootSector, rootSector, isoRecord([]byte("PRE_NIXOS"), pn, isoSector, true, nil))
	_, err := RootKey(context.Background(), b.write(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "its 1000 bytes at byte 10240000 run past the end of the 40960-byte image")
}

// Forty directories whose extents overlap (each starts one sector after the last and
// is 16 sectors long): every one is distinct, so the loop guard passes them, but
// together they would read the same bytes again and again; what is read of an image
// cannot add up to more than the image.
func TestHostileISOOverlappingDirectories(t *testing.T) {
	b := newISOBuilder("HOSTILE")
	d := b.alloc(60)
	var recs [][]byte
	for i := uint32(0); i < 40; i++ {
		recs = append(recs, isoRecord([]byte{'A' + byte(i/26), 'A' + byte(i%26)}, d+i, 16*isoSector, true, nil))
	}
	b.dir(rootSector, rootSector, recs...)
	iso := b.write(t)
	var err error
	bounded(t, 8<<20, func() { _, err = InspectISO(context.Background(), iso) })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "would read more than the")
}

// A directory of 32 MiB inside a 40 MiB image: within the image, but no real
// directory is that large, and it would be read into memory whole.
func TestHostileISOLargeDirectoryInsideTheImage(t *testing.T) {
	b := newISOBuilder("HOSTILE")
	d := b.alloc(1)
	b.dir(rootSector, rootSector, isoRecord([]byte("BIG"), d, 32<<20, true, nil))
	iso := b.write(t)
	require.NoError(t, os.Truncate(iso, 40<<20))
	var err error
	bounded(t, 8<<20, func() { _, err = InspectISO(context.Background(), iso) })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "claims 33554432 bytes, more than the 16777216 any image needs")
}

// A directory that points back at the root: each directory extent is read once.
func TestHostileISODirectoryLoop(t *testing.T) {
	b := newISOBuilder("HOSTILE")
	sub := b.alloc(1)
	b.dir(sub, rootSector, isoRecord([]byte("BACK"), rootSector, isoSector, true, nil))
	b.dir(rootSector, rootSector, isoRecord([]byte("SUB"), sub, isoSector, true, nil))
	iso := b.write(t)
	var err error
	bounded(t, 8<<20, func() { _, err = RootKey(context.Background(), iso) })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "directory loop: /sub/back points back at sector 18")
}

// A chain of distinct directories deeper than any image: ends at the depth cap.
func TestHostileISODeepChain(t *testing.T) {
	b := newISOBuilder("HOSTILE")
	const n = isoMaxDepth + 10
	first := b.alloc(n)
	for i := uint32(0); i < n; i++ {
		parent := first + i - 1
		if i == 0 {
			parent = rootSector
		}
		var recs [][]byte
		if i+1 < n {
			recs = append(recs, isoRecord([]byte("D"), first+i+1, isoSector, true, nil))
		}
		b.dir(first+i, parent, recs...)
	}
	b.dir(rootSector, rootSector, isoRecord([]byte("D"), first, isoSector, true, nil))
	_, err := InspectISO(context.Background(), b.write(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nested deeper than 64")
}

func TestHostileISOTooManyEntries(t *testing.T) {
	defer func(n int) { isoMaxEntries = n }(isoMaxEntries)
	isoMaxEntries = 10
	b := newISOBuilder("HOSTILE")
	var recs [][]byte
	for i := 0; i < 20; i++ {
		recs = append(recs, b.file(string(rune('A'+i))+";1", []byte("x")))
	}
	b.dir(rootSector, rootSector, recs...)
	_, err := InspectISO(context.Background(), b.write(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than 10 entries")
}

// A Rock Ridge continuation area that continues into itself.
func TestHostileISOContinuationLoop(t *testing.T) {
	b := newISOBuilder("HOSTILE")
	ce := b.alloc(1)
	ceEntry := make([]byte, 28)
	copy(ceEntry, "CE")
	ceEntry[2], ceEntry[3] = 28, 1
	binary.LittleEndian.PutUint32(ceEntry[4:], ce)
	binary.LittleEndian.PutUint32(ceEntry[12:], 0)
	binary.LittleEndian.PutUint32(ceEntry[20:], 28)
	copy(b.img[int(ce)*isoSector:], ceEntry)
	sp := []byte{'S', 'P', 7, 1, 0xBE, 0xEF, 0}
	rootDot := isoRecord([]byte{0}, rootSector, isoSector, true, sp)
	d := append(rootDot, isoRecord([]byte{1}, rootSector, isoSector, true, nil)...)
	d = append(d, isoRecord([]byte("F;1"), ce, 1, false, ceEntry)...)
	copy(b.img[rootSector*isoSector:], d)
	copy(b.img[16*isoSector+156:], isoRecord([]byte{0}, rootSector, isoSector, true, nil))
	_, err := InspectISO(context.Background(), b.write(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than 16 Rock Ridge continuation areas")
}

// A squashfs layer whose extent runs past the end of the image: the walk refuses it
// before the squashfs reader sees it.
func TestHostileISOLayerPastTheEnd(t *testing.T) {
	b := newISOBuilder("HOSTILE")
	data := b.alloc(1)
	b.dir(rootSector, rootSector, isoRecord([]byte("ROOT.SQUASHFS;1"), data, 1<<30, false, nil))
	_, err := InspectISO(context.Background(), b.write(t))
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), "/root.squashfs: its 1073741824 bytes at byte 38912 run past the end of the")
}

// Inspection has a deadline of its own (RootKey runs before every boot), and stops
// when its context ends.
func TestInspectionDeadline(t *testing.T) {
	b := newISOBuilder("SLOW")
	b.dir(rootSector, rootSector, b.file("README;1", []byte("x")))
	iso := b.write(t)
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
	b := newISOBuilder("STUCK")
	b.dir(rootSector, rootSector, b.file("ROOT.SQUASHFS;1", []byte("hsqs")))
	_, err := RootKey(context.Background(), b.write(t))
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
	b := newISOBuilder("EVIL\x1b]0;x\x07")
	pn := b.alloc(1)
	b.dir(pn, rootSector, b.file("ROOT_KEY.PUB;1", []byte(key+"\n")))
	b.dir(rootSector, rootSector,
		isoRecord([]byte("PRE_NIXOS"), pn, isoSector, true, nil),
		b.file("\x1b[2J\x9b31m\\;1", []byte("x")))
	rep, err := InspectISO(context.Background(), b.write(t))
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

// FuzzReadISO feeds the ISO reader arbitrary images: it must not panic, and whatever
// it lists must lie inside the image. The input is dense: its 256-byte chunks are the
// starts of sectors 16, 17, ... (volume descriptors, directories and small files
// use no more of a sector), after the 32 KiB system area that is never read. A 45 KiB
// image as input made the fuzzer spend its time minimising.
func FuzzReadISO(f *testing.F) {
	const chunk = 256
	b := newISOBuilder("SEED")
	pn := b.alloc(1)
	b.dir(pn, rootSector, b.file("ROOT_KEY.PUB;1", []byte("ssh-ed25519 AAAA x\n")))
	b.dir(rootSector, rootSector, isoRecord([]byte("PRE_NIXOS"), pn, isoSector, true, nil), b.file("A.SQUASHFS;1", []byte("hsqs")))
	binary.LittleEndian.PutUint32(b.img[16*isoSector+80:], uint32(len(b.img)/isoSector))
	var seed []byte
	for s := 16 * isoSector; s < len(b.img); s += isoSector {
		seed = append(seed, b.img[s:s+chunk]...)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, in []byte) {
		data := make([]byte, (16+(len(in)+chunk-1)/chunk)*isoSector)
		for i := 0; i*chunk < len(in); i++ {
			copy(data[(16+i)*isoSector:], in[i*chunk:min(len(in), (i+1)*chunk)])
		}
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
				if b, err := img.readFile(e, MaxKeyFile); err == nil && int64(len(b)) != e.Size {
					t.Fatalf("%s: read %d bytes of %d", e.Path, len(b), e.Size)
				}
			}
		}
	})
}
