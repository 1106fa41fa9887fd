package isotest

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ZstdBomb is a zstd frame of n run-length blocks of 128 KiB each: 4 bytes a block on
// disk, so 2000 of them (8 KiB, one squashfs metadata block) say 250 MiB.
func ZstdBomb(n int) []byte {
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

// BombSquashfs is a real zstd squashfs (made with mksquashfs, which the test needs)
// whose fragment table's one metadata block is a zstd bomb of 8 KiB on disk, bombs
// copies of it: every table pointer is as honest as a superblock check can see, only
// the blocks' content lies.
func BombSquashfs(t *testing.T, bombs int) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "motd"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "fs.squashfs")
	if b, err := exec.Command("mksquashfs", src, out, "-noappend", "-comp", "zstd", "-no-exports", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, b)
	}
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if le.Uint32(img[16:]) != 1 || le.Uint64(img[88:]) != ^uint64(0) {
		t.Fatalf("mksquashfs wrote %d fragments and an export table at %#x", le.Uint32(img[16:]), le.Uint64(img[88:]))
	}
	// A new tail after bytes_used: the bomb blocks, the fragment index (one entry per
	// 512 fragments), a copy of the id block and its index, in the format's order.
	img = img[:le.Uint64(img[40:])]
	idTable := le.Uint64(img[48:])
	idData := append([]byte(nil), img[le.Uint64(img[idTable:]):idTable]...)
	bomb := ZstdBomb(2000)
	var blocks []uint64
	for i := 0; i < bombs; i++ {
		blocks = append(blocks, uint64(len(img)))
		img = le.AppendUint16(img, uint16(len(bomb))) // the high bit clear: compressed
		img = append(img, bomb...)
	}
	frag := uint64(len(img))
	for _, p := range blocks {
		img = le.AppendUint64(img, p)
	}
	q := uint64(len(img))
	img = append(img, idData...)
	ids := uint64(len(img))
	img = le.AppendUint64(img, q)
	le.PutUint32(img[16:], uint32(512*bombs))
	le.PutUint32(img[4:], uint32(512*bombs)) // inodes: at least the fragments
	le.PutUint64(img[80:], frag)
	le.PutUint64(img[48:], ids)
	le.PutUint64(img[40:], uint64(len(img)))
	return img
}
