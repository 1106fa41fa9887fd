package isoinspect

import (
	"bytes"
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/bootlab/bootlab/artifacts/isoinspect/isotest"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestZstdBombIsWhatItSays(t *testing.T) {
	d, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer d.Close()
	out, err := d.DecodeAll(isotest.ZstdBomb(3), nil)
	require.NoError(t, err)
	assert.Equal(t, 3*128<<10, len(out))
}

// A metadata block that decompresses past 8 KiB is refused before go-diskfs
// decompresses it (250 MiB here); honest layers (the fixture's zstd and gzip ones in
// TestInspectISO) read as before.
func TestSquashfsDecompressionBomb(t *testing.T) {
	need(t, "mksquashfs", "squashfs-tools")
	layer := isotest.BombSquashfs(t, 1)
	require.NoError(t, checkSquashfs(bytes.NewReader(layer), int64(len(layer))), "the tables are in order")
	b := isotest.New("BOMB")
	b.Dir(rootSector, rootSector, b.File("ROOT.SQUASHFS;1", layer))
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

// ISO.OpenSquashfs, for callers that read one layer (the fixture's key check), has
// the checks and the bound InspectISO has.
func TestOpenSquashfs(t *testing.T) {
	honest := makeSquashfs(t, "zstd")
	hostile := append([]byte(nil), honest...)
	put32(16, ^uint32(0))(hostile)
	for _, c := range []struct {
		name, want string
		layer      []byte
	}{
		{"honest", "", honest},
		{"fragment count", "squashfs superblock: fragment count 4294967295", hostile},
		{"zstd bomb", "decompresses to more than 131072 bytes", isotest.BombSquashfs(t, 1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := isotest.New("LAYER")
			b.Dir(rootSector, rootSector, b.File("ROOT.SQUASHFS;1", c.layer))
			iso, err := OpenISO(context.Background(), b.Write(t, "layer.iso"))
			require.NoError(t, err)
			defer iso.Close()
			var sq fs.FS
			bounded(t, 32<<20, func() { sq, err = iso.OpenSquashfs("root.squashfs") })
			if c.want == "" {
				require.NoError(t, err)
				key, err := readSquashFile(sq, SquashfsKeyPath, MaxKeyFile)
				require.NoError(t, err)
				assert.Equal(t, "ssh-ed25519 AAAA x\n", string(key))
				return
			}
			require.ErrorIs(t, err, ErrHostile)
			assert.Contains(t, err.Error(), "opening squashfs root.squashfs: malformed or hostile image: ")
			assert.Contains(t, err.Error(), c.want)
		})
	}
}
