package isoinspect

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/isoinspect/isotest"
)

// openBuilt opens b's image through OpenISO, measuring what it allocates.
func openBuilt(t *testing.T, b *isotest.Builder) (*ISO, error) {
	t.Helper()
	p := b.Write(t, "hostile.iso")
	var iso *ISO
	var err error
	bounded(t, 8<<20, func() { iso, err = OpenISO(context.Background(), p) })
	if iso != nil {
		t.Cleanup(func() { iso.Close() })
	}
	return iso, err
}

// hostile asserts that the image is refused as hostile with want in the message.
func hostile(t *testing.T, b *isotest.Builder, want string) {
	t.Helper()
	_, err := openBuilt(t, b)
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), want)
	assert.NotContains(t, err.Error(), "\n", "one line")
}

func simple(label string) *isotest.Builder {
	b := isotest.New(label)
	b.Dir(b.Root, b.Root, b.File("README.TXT;1", []byte("hello\n")))
	return b
}

// Issue 24: an ISO of a few KiB whose primary descriptor claims a 3.75 GiB path table
// killed bootlab (go-diskfs allocated it whole). bootlab reads no path table to walk
// the tree, but the claim marks the image: it is refused before anything allocates it.
func TestHostileISOPathTableClaim(t *testing.T) {
	b := simple("HOSTILE")
	binary.LittleEndian.PutUint32(b.VD(0)[132:], 0xF0000000)
	hostile(t, b, "primary volume descriptor claims a 4026531840-byte path table, more than the 40960-byte image holds")

	// Inside a 40 MiB image, but larger than any path table.
	b = simple("HOSTILE")
	binary.LittleEndian.PutUint32(b.VD(0)[80:], 40<<20/isoSector)
	binary.LittleEndian.PutUint32(b.VD(0)[132:], 32<<20)
	binary.LittleEndian.PutUint32(b.VD(0)[140:], b.Root)
	p := b.Write(t, "big.iso")
	require.NoError(t, os.Truncate(p, 40<<20))
	var err error
	bounded(t, 8<<20, func() { _, err = OpenISO(context.Background(), p) })
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), "claims a 33554432-byte path table, more than the 16777216 any image needs")
}

func TestHostileISOPathTablePastTheEnd(t *testing.T) {
	b := simple("HOSTILE")
	binary.LittleEndian.PutUint32(b.VD(0)[132:], 100)
	binary.LittleEndian.PutUint32(b.VD(0)[140:], 5000)
	hostile(t, b, "the little-endian path table's 100 bytes at sector 5000 run past the end")
	b = simple("HOSTILE")
	binary.LittleEndian.PutUint32(b.VD(0)[132:], 100)
	binary.LittleEndian.PutUint32(b.VD(0)[140:], b.Root)
	binary.BigEndian.PutUint32(b.VD(0)[148:], 5000)
	hostile(t, b, "the big-endian path table's 100 bytes at sector 5000 run past the end")
}

// A path table's records name their parents by number, and ISO9660 orders the table
// so that a parent comes first: a later parent (or the record itself) is a loop.
func TestHostileISOPathTableLoop(t *testing.T) {
	for name, tc := range map[string]struct {
		recs []isotest.PathRecord
		want string
	}{
		"forward": {[]isotest.PathRecord{{Extent: 18, Parent: 1}, {Extent: 18, Parent: 3, Name: "A"}, {Extent: 18, Parent: 2, Name: "B"}},
			"path table record 2 names record 3 as its parent (parents come first: a loop)"},
		"itself": {[]isotest.PathRecord{{Extent: 18, Parent: 1}, {Extent: 18, Parent: 2, Name: "A"}},
			"path table record 2 names record 2 as its parent"},
		"nothing": {[]isotest.PathRecord{{Extent: 18, Parent: 0}}, "path table record 1 names record 0 as its parent"},
		"directory past the end": {[]isotest.PathRecord{{Extent: 18, Parent: 1}, {Extent: 90000, Parent: 1, Name: "A"}},
			"path table record 2 puts its directory at sector 90000, past the end"},
	} {
		t.Run(name, func(t *testing.T) {
			b := simple("HOSTILE")
			b.PathTable(tc.recs...)
			hostile(t, b, tc.want)
		})
	}
	// A table as mastering tools write it passes.
	b := isotest.New("OK")
	sub := b.Alloc(1)
	b.Dir(sub, b.Root)
	b.Dir(b.Root, b.Root, isotest.Record([]byte("SUB"), sub, isotest.Sector, true, nil))
	b.PathTable(isotest.PathRecord{Extent: b.Root, Parent: 1}, isotest.PathRecord{Extent: sub, Parent: 1, Name: "SUB"})
	iso, err := openBuilt(t, b)
	require.NoError(t, err)
	_, err = iso.Stat("sub")
	require.NoError(t, err)
}

func TestHostileISOVolumeDescriptorClaims(t *testing.T) {
	b := simple("HOSTILE")
	binary.LittleEndian.PutUint32(b.VD(0)[80:], 0x200000)
	hostile(t, b, "primary volume descriptor claims 2097152 sectors (4294967296 bytes), more than the")

	b = simple("HOSTILE")
	copy(b.VD(0)[156:], isotest.Record([]byte{0}, b.Root, 0xF0000000, true, nil))
	hostile(t, b, "the root directory claims 4026531840 bytes")

	b = simple("HOSTILE")
	copy(b.VD(0)[156:], isotest.Record([]byte{0}, 90000, isotest.Sector, true, nil))
	hostile(t, b, "the root directory's 2048 bytes at byte 184320000 run past the end")

	b = simple("HOSTILE")
	binary.LittleEndian.PutUint16(b.VD(0)[128:], 512)
	hostile(t, b, "logical block size 512")
}

// Volume descriptors repeat until the terminator; a run of them without one ends at
// the cap (here 40 primaries that would otherwise be read to the end of the image).
func TestHostileISODescriptorsWithoutATerminator(t *testing.T) {
	b := isotest.NewWithVDs("HOSTILE", 41)
	for i := 1; i <= 41; i++ {
		copy(b.VD(i), b.VD(0)[:190])
	}
	b.Dir(b.Root, b.Root)
	for i := 1; i <= 41; i++ {
		copy(b.VD(i)[156:], b.VD(0)[156:190])
	}
	hostile(t, b, "more than 32 volume descriptors without a terminator")
}

// The root of the primary descriptor points at a directory whose subdirectory is the
// root again: the loop the issue names in the volume descriptor's root record.
func TestHostileISORootLoop(t *testing.T) {
	b := isotest.New("HOSTILE")
	sub := b.Alloc(1)
	b.Dir(sub, b.Root, isotest.Record([]byte("UP"), b.Root, isotest.Sector, true, nil))
	b.Dir(b.Root, b.Root, isotest.Record([]byte("SUB"), sub, isotest.Sector, true, nil))
	hostile(t, b, "directory loop: /sub/up points back at sector 18")
}

func TestHostileISODuplicateNames(t *testing.T) {
	b := isotest.New("HOSTILE")
	b.Dir(b.Root, b.Root, b.File("KEY;1", []byte("a")), b.File("KEY;1", []byte("bb")))
	// Not contiguous: two files of one name, not one multi-extent file.
	hostile(t, b, `two entries named "key" in /`)
}

// A multi-extent file (parts in consecutive records of one name) is checked as a
// whole: each part inside the image is not enough.
func TestHostileISOMultiExtentPastTheEnd(t *testing.T) {
	b := isotest.New("HOSTILE")
	data := b.Alloc(2)
	b.Dir(b.Root, b.Root,
		isotest.Record([]byte("BIG;1"), data, isotest.Sector, false, nil),
		isotest.Record([]byte("BIG;1"), data+1, 0xFFFFF000, false, nil))
	hostile(t, b, "/big: its 4294965248 bytes at byte 38912 run past the end")
	// Parts that fit are one file.
	b = isotest.New("OK")
	data = b.Alloc(2)
	copy(b.Img[int(data)*isotest.Sector:], bytes.Repeat([]byte("ab"), isotest.Sector))
	b.Dir(b.Root, b.Root,
		isotest.Record([]byte("BIG;1"), data, isotest.Sector, false, nil),
		isotest.Record([]byte("BIG;1"), data+1, isotest.Sector, false, nil))
	iso, err := openBuilt(t, b)
	require.NoError(t, err)
	got, err := iso.ReadFileMax("big", 1<<20)
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte("ab"), isotest.Sector), got)
}

// jolietImage has plain ISO9660 names in the primary tree and long mixed-case ones in
// the Joliet tree, no Rock Ridge.
func jolietImage() *isotest.Builder {
	b := isotest.NewWithVDs("JOLIET", 2)
	data := b.Alloc(1)
	copy(b.Img[int(data)*isotest.Sector:], "menu\n")
	jsub, jroot, sub := b.Alloc(1), b.Alloc(1), b.Alloc(1)
	b.Dir(sub, b.Root, isotest.Record([]byte("ISOLINUX.CFG;1"), data, 5, false, nil))
	b.Dir(b.Root, b.Root, isotest.Record([]byte("BOOT_DIR"), sub, isotest.Sector, true, nil))
	b.Dir(jsub, jroot, isotest.Record(isotest.UCS2("isolinux.cfg;1"), data, 5, false, nil))
	b.Dir(jroot, jroot, isotest.Record(isotest.UCS2("Boot Dir é"), jsub, isotest.Sector, true, nil))
	b.Joliet(1, jroot)
	return b
}

// Without Rock Ridge, the Joliet tree gives the names (as Linux shows them).
func TestJolietNames(t *testing.T) {
	iso, err := openBuilt(t, jolietImage())
	require.NoError(t, err)
	assert.Equal(t, "joliet", iso.Names())
	b, err := iso.ReadFileMax("Boot Dir é/isolinux.cfg", 100)
	require.NoError(t, err)
	assert.Equal(t, "menu\n", string(b))
}

func TestHostileJoliet(t *testing.T) {
	b := jolietImage()
	binary.LittleEndian.PutUint32(b.VD(1)[132:], 0xF0000000)
	hostile(t, b, "Joliet volume descriptor claims a 4026531840-byte path table")

	b = jolietImage()
	jroot := binary.LittleEndian.Uint32(b.VD(1)[158:])
	b.Dir(jroot, jroot, isotest.Record([]byte{0, 'a', 0}, jroot+1, isotest.Sector, true, nil))
	hostile(t, b, "Joliet name of odd length 3")

	b = jolietImage()
	b.Dir(jroot, jroot, isotest.Record(isotest.UCS2("loop"), jroot, isotest.Sector, true, nil))
	hostile(t, b, "directory loop: /loop points back at sector")
}

// elToritoImage has a BIOS entry on isolinux.bin and an EFI section with one image.
func elToritoImage(entries ...[]byte) *isotest.Builder {
	b := isotest.NewWithVDs("BOOT", 2)
	bin := b.File("ISOLINUX.BIN;1", bytes.Repeat([]byte{0x90}, 2048))
	efi := b.File("EFI.IMG;1", bytes.Repeat([]byte{0xEB}, 4096))
	b.Dir(b.Root, b.Root, bin, efi)
	if entries == nil {
		entries = [][]byte{
			isotest.BootEntry(true, 0, binary.LittleEndian.Uint32(bin[2:]), 4),
			isotest.SectionHeader(true, 0xef, 1),
			isotest.BootEntry(true, 0, binary.LittleEndian.Uint32(efi[2:]), 8),
		}
	}
	b.ElTorito(1, 0, entries...)
	return b
}

func TestElToritoBootImages(t *testing.T) {
	iso, err := openBuilt(t, elToritoImage())
	require.NoError(t, err)
	require.Len(t, iso.BootImages(), 2)
	assert.Equal(t, BootImage{Platform: "bios", Bootable: true, Media: "no emulation", Sector: 20, Sectors: 4, File: "isolinux.bin"}, iso.BootImages()[0])
	assert.Equal(t, BootImage{Platform: "efi", Bootable: true, Media: "no emulation", Sector: 21, Sectors: 8, File: "efi.img"}, iso.BootImages()[1])
}

func TestHostileElTorito(t *testing.T) {
	t.Run("image past the end", func(t *testing.T) {
		hostile(t, elToritoImage(isotest.BootEntry(true, 0, 90000, 4)), "the boot image's 2048 bytes at sector 90000 run past the end")
	})
	t.Run("image longer than the image", func(t *testing.T) {
		hostile(t, elToritoImage(isotest.BootEntry(true, 0, 20, 0xFFFF)), "the boot image's 33553920 bytes at sector 20 run past the end")
	})
	t.Run("floppy past the end", func(t *testing.T) {
		hostile(t, elToritoImage(isotest.BootEntry(true, 2, 20, 1)), "the boot image's 1474560 bytes at sector 20")
	})
	t.Run("section claims more than the catalog holds", func(t *testing.T) {
		hostile(t, elToritoImage(isotest.BootEntry(true, 0, 20, 4), isotest.SectionHeader(true, 0xef, 60000)),
			"a section claims 60000 entries, more than the catalog's")
	})
	t.Run("media type", func(t *testing.T) {
		hostile(t, elToritoImage(isotest.BootEntry(true, 9, 20, 4)), "boot media type 9")
	})
	t.Run("checksum", func(t *testing.T) {
		b := elToritoImage()
		cat := binary.LittleEndian.Uint32(b.VD(1)[71:])
		b.Img[int(cat)*isotest.Sector+4] ^= 1
		hostile(t, b, "validation entry has a bad checksum")
	})
	t.Run("catalog past the end", func(t *testing.T) {
		b := elToritoImage()
		binary.LittleEndian.PutUint32(b.VD(1)[71:], 90000)
		hostile(t, b, "the catalog at sector 90000 lies past the end")
	})
}

// The fs.FS over a real image (xorriso, Rock Ridge and Joliet, an El Torito boot
// image, symlinks) passes the standard library's file system checks, follows links
// inside the image, and streams file data.
func TestISOFSOnAnXorrisoImage(t *testing.T) {
	need(t, "xorriso", "xorriso")
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	writeTree(t, root, map[string]string{
		"isolinux/isolinux.bin": strings.Repeat("\x90", 2048),
		"isolinux/isolinux.cfg": "DEFAULT linux\n",
		"boot/grub/grub.cfg":    "menuentry x {}\n",
		"Mixed Case Name.txt":   "x",
	})
	require.NoError(t, os.Symlink(".", filepath.Join(root, "debian")))
	require.NoError(t, os.Symlink("../isolinux/isolinux.cfg", filepath.Join(root, "boot", "cfg")))
	iso := filepath.Join(tmp, "x.iso")
	run(t, tmp, "xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "FSTEST", "-b", "isolinux/isolinux.bin", "-no-emul-boot", "-boot-load-size", "4", "-o", iso, root)
	img, err := OpenISO(context.Background(), iso)
	require.NoError(t, err)
	defer img.Close()
	assert.Equal(t, "FSTEST", img.Label())
	assert.Equal(t, "rock ridge", img.Names())
	require.NotEmpty(t, img.BootImages())
	assert.Equal(t, "isolinux/isolinux.bin", img.BootImages()[0].File)
	// fstest walks every directory, so the "debian -> ." link is listed, not followed.
	require.NoError(t, fstest.TestFS(img, "isolinux/isolinux.cfg", "boot/grub/grub.cfg", "Mixed Case Name.txt", "debian", "boot/cfg"))
	b, err := fs.ReadFile(img, "debian/debian/boot/cfg")
	require.NoError(t, err)
	assert.Equal(t, "DEFAULT linux\n", string(b))
	_, err = img.ReadFileMax("isolinux/isolinux.bin", 100)
	assert.ErrorContains(t, err, "is 2048 bytes, more than the 100 expected")
}

// Rock Ridge symlinks that point at each other end at the hop limit.
func TestHostileISOSymlinkLoop(t *testing.T) {
	b := isotest.New("LINKS")
	sp := []byte{'S', 'P', 7, 1, 0xBE, 0xEF, 0}
	link := func(name, target string) []byte {
		nm := append([]byte{'N', 'M', byte(5 + len(name)), 1, 0}, name...)
		px := make([]byte, 36)
		copy(px, "PX")
		px[2], px[3] = 36, 1
		binary.LittleEndian.PutUint32(px[4:], 0o120777)
		sl := append([]byte{'S', 'L', byte(5 + 2 + len(target)), 1, 0, 0, byte(len(target))}, target...)
		su := append(append(nm, px...), sl...)
		return isotest.Record([]byte(strings.ToUpper(name)+";1"), 0, 0, false, su)
	}
	d := append(isotest.Record([]byte{0}, b.Root, isotest.Sector, true, sp), isotest.Record([]byte{1}, b.Root, isotest.Sector, true, nil)...)
	d = append(d, link("a", "b")...)
	d = append(d, link("b", "a")...)
	copy(b.Img[int(b.Root)*isotest.Sector:], d)
	copy(b.VD(0)[156:], isotest.Record([]byte{0}, b.Root, isotest.Sector, true, nil))
	iso, err := openBuilt(t, b)
	require.NoError(t, err)
	_, err = iso.Open("a")
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), "more than 16 symlinks")
	st, err := fs.Lstat(iso, "a")
	if err == nil { // fs.Lstat needs ReadLinkFS; when absent it stats, which fails
		assert.NotZero(t, st.Mode()&fs.ModeSymlink)
	}
}

// File data is streamed through the fs.FS and ends at the file's size.
func TestISOFileReads(t *testing.T) {
	b := isotest.New("READ")
	b.Dir(b.Root, b.Root, b.File("DATA.BIN;1", bytes.Repeat([]byte("0123456789"), 1000)))
	iso, err := openBuilt(t, b)
	require.NoError(t, err)
	f, err := iso.Open("data.bin")
	require.NoError(t, err)
	defer f.Close()
	n, err := io.Copy(io.Discard, f)
	require.NoError(t, err)
	assert.Equal(t, int64(10000), n)
	_, err = iso.Open("../x")
	assert.ErrorIs(t, err, fs.ErrInvalid)
	_, err = iso.Open("data.bin/x")
	assert.ErrorContains(t, err, "not a directory")
}

// An error names entries of the image, whose names whoever built it chose: it is
// escaped for the terminal it is printed on.
func TestHostileISOErrorsArePrintable(t *testing.T) {
	b := isotest.New("HOSTILE")
	b.Dir(b.Root, b.Root, isotest.Record([]byte("\x1b[2J;1"), 19, 1<<30, false, nil))
	_, err := openBuilt(t, b)
	require.ErrorIs(t, err, ErrHostile)
	assert.NotContains(t, err.Error(), "\x1b")
	assert.Contains(t, err.Error(), `/\x1b[2j: its 1073741824 bytes`)
}

// A real Joliet-only image (xorriso, Rock Ridge off): the long mixed-case names come
// from the Joliet tree.
func TestJolietNamesOnAnXorrisoImage(t *testing.T) {
	need(t, "xorriso", "xorriso")
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	writeTree(t, root, map[string]string{"Boot Dir/Long Mixed Name.cfg": "hi\n"})
	iso := filepath.Join(tmp, "j.iso")
	run(t, tmp, "xorriso", "-report_about", "WARNING", "-outdev", iso, "-rockridge", "off", "-joliet", "on", "-volid", "JOL", "-map", root, "/")
	img, err := OpenISO(context.Background(), iso)
	require.NoError(t, err)
	defer img.Close()
	assert.Equal(t, "joliet", img.Names())
	b, err := fs.ReadFile(img, "Boot Dir/Long Mixed Name.cfg")
	require.NoError(t, err)
	assert.Equal(t, "hi\n", string(b))
}
