package bootmenu

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/artifacts/isoinspect/isotest"
)

// menuISO is a plain ISO9660 image (upper-case names, no Rock Ridge) with an
// ISOLINUX menu, a kernel and an initrd.
func menuISO() *isotest.Builder {
	b := isotest.New("MENU")
	cfg := "DEFAULT linux\nLABEL linux\n KERNEL /boot/vmlinuz\n APPEND initrd=/boot/initrd.gz quiet\n"
	dir, boot := b.Alloc(1), b.Alloc(1)
	b.Dir(dir, b.Root, b.File("ISOLINUX.CFG;1", []byte(cfg)))
	b.Dir(boot, b.Root, b.File("VMLINUZ;1", []byte("kernel")), b.File("INITRD.GZ;1", []byte("initrd!")))
	b.Dir(b.Root, b.Root,
		isotest.Record([]byte("BOOT"), boot, isotest.Sector, true, nil),
		isotest.Record([]byte("ISOLINUX"), dir, isotest.Sector, true, nil))
	return b
}

// The menu and the kernel and initrd of a direct boot are read through the bounded
// reader (isoinspect): names match case-insensitively, and the files are copied out.
func TestReadISOAndExtractThroughTheBoundedReader(t *testing.T) {
	iso := menuISO().Write(t, "menu.iso")
	menus, err := ReadISO(context.Background(), iso)
	require.NoError(t, err)
	e, err := Select(menus, "")
	require.NoError(t, err)
	assert.Equal(t, "/boot/vmlinuz", e.Kernel)
	x, err := Extract(context.Background(), iso, e, t.TempDir())
	require.NoError(t, err)
	k, err := os.ReadFile(x.Kernel)
	require.NoError(t, err)
	assert.Equal(t, "kernel", string(k))
	i, err := os.ReadFile(x.Initrd)
	require.NoError(t, err)
	assert.Equal(t, "initrd!", string(i))
}

// Issue 24: the boot menu was read with go-diskfs first, which allocated the 3.75 GiB
// path table this image claims. Now the claim is an error wrapping ErrHostile.
func TestReadISORefusesAHostileImage(t *testing.T) {
	b := menuISO()
	binary.LittleEndian.PutUint32(b.VD(0)[132:], 0xF0000000)
	iso := b.Write(t, "hostile.iso")
	_, err := ReadISO(context.Background(), iso)
	require.ErrorIs(t, err, isoinspect.ErrHostile)
	assert.Contains(t, err.Error(), "claims a 4026531840-byte path table")
	_, err = Extract(context.Background(), iso, Entry{Label: "x", Kernel: "/boot/vmlinuz"}, t.TempDir())
	require.ErrorIs(t, err, isoinspect.ErrHostile)
}

// FuzzReadISOMenus reads boot menus, and the kernels they name, out of fuzzed ISO
// images through the bounded reader. The input is dense: its 256-byte chunks are the
// starts of sectors 16, 17, ... (descriptors, directories and the small files here
// use no more of a sector).
func FuzzReadISOMenus(f *testing.F) {
	const chunk = 256
	img := menuISO().Bytes()
	var seed []byte
	for s := 16 * isotest.Sector; s < len(img); s += isotest.Sector {
		seed = append(seed, img[s:s+chunk]...)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, in []byte) {
		data := make([]byte, (16+(len(in)+chunk-1)/chunk)*isotest.Sector)
		for i := 0; i*chunk < len(in); i++ {
			copy(data[(16+i)*isotest.Sector:], in[i*chunk:min(len(in), (i+1)*chunk)])
		}
		iso, err := isoinspect.NewISO(context.Background(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		menus, err := Find(iso)
		if err != nil {
			return
		}
		for _, m := range menus {
			for _, e := range m.Entries {
				if !e.Bootable() {
					continue
				}
				name, ok := Exists(iso, e.Kernel)
				if !ok {
					continue
				}
				f, err := iso.Open(name)
				if err != nil {
					t.Fatalf("%s exists but does not open: %v", name, err)
				}
				st, _ := f.Stat()
				if n, err := io.Copy(io.Discard, f); err != nil || n != st.Size() {
					t.Fatalf("%s: copied %d of %d bytes (%v)", name, n, st.Size(), err)
				}
			}
		}
	})
}
