package isoinspect

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootlab/bootlab/artifacts/isoinspect/isotest"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// zstdBomb is a zstd frame of n run-length blocks of 128 KiB each: 4 bytes a block
// on disk, so 2000 of them (8 KiB, one metadata block) say 250 MiB.
func zstdBomb(n int) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38} // magic, no size, 128 KiB window
	for i := 0; i < n; i++ {
		h := uint32(128<<10)<<3 | 1<<1 // RLE block of 128 KiB
		if i == n-1 {
			h |= 1 // last
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 0)
	}
	return b
}

func TestZstdBombIsWhatItSays(t *testing.T) {
	d, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer d.Close()
	out, err := d.DecodeAll(zstdBomb(3), nil)
	require.NoError(t, err)
	assert.Equal(t, 3*128<<10, len(out))
}

// bombLayer is a real zstd squashfs whose fragment table's one metadata block is
// replaced by a zstd bomb of 8 KiB on disk: every table pointer is as honest as
// checkSquashfs can see, only the block's content lies.
func bombLayer(t *testing.T) []byte {
	t.Helper()
	need(t, "mksquashfs", "squashfs-tools")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "etc", "motd"), []byte("hello\n"), 0o644))
	out := filepath.Join(dir, "fs.squashfs")
	run(t, dir, "mksquashfs", src, out, "-noappend", "-comp", "zstd", "-no-exports", "-quiet", "-no-progress")
	img, err := os.ReadFile(out)
	require.NoError(t, err)
	le := binary.LittleEndian
	sb := parseSqSuperblock(img)
	require.Equal(t, uint32(1), sb.fragments)
	require.Equal(t, sqInvalid, sb.exportTable)
	// New tail after bytes_used: the bomb block, the fragment index, a copy of the id
	// block and its index, in the order the format wants.
	img = img[:sb.bytesUsed]
	idBlock := le.Uint64(img[sb.idTable:])
	idData := append([]byte(nil), img[idBlock:sb.idTable]...)
	bomb := zstdBomb(2000)
	p := uint64(len(img))
	img = binary.LittleEndian.AppendUint16(img, uint16(len(bomb))) // compressed
	img = append(img, bomb...)
	frag := uint64(len(img))
	img = le.AppendUint64(img, p)
	q := uint64(len(img))
	img = append(img, idData...)
	ids := uint64(len(img))
	img = le.AppendUint64(img, q)
	le.PutUint64(img[80:], frag)
	le.PutUint64(img[48:], ids)
	le.PutUint64(img[40:], uint64(len(img)))
	require.NoError(t, checkSquashfs(bytes.NewReader(img), int64(len(img))), "the tables are in order")
	return img
}

// A metadata block that decompresses past 8 KiB is refused before go-diskfs
// decompresses it (250 MiB here); honest layers (the fixture's zstd and gzip ones in
// TestInspectISO) read as before.
func TestSquashfsDecompressionBomb(t *testing.T) {
	b := isotest.New("BOMB")
	b.Dir(rootSector, rootSector, b.File("ROOT.SQUASHFS;1", bombLayer(t)))
	iso := b.Write(t, "bomb.iso")
	var (
		rep *Report
		err error
	)
	bounded(t, 32<<20, func() { rep, err = InspectISO(context.Background(), iso) })
	require.NoError(t, err)
	require.Len(t, rep.Problems, 1)
	assert.Contains(t, rep.Problems[0], "root.squashfs: malformed or hostile image: squashfs block of 8006 bytes at byte")
	assert.Contains(t, rep.Problems[0], "decompresses to more than 131072 bytes")
	assert.False(t, strings.Contains(rep.Problems[0], "\n"))
}
