package isoinspect

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// The squashfs layers inside an ISO are read by go-diskfs, which trusts the superblock:
// it allocates the fragment, id and xattr indexes their counts claim and follows every
// table pointer, so a layer of a few KiB claiming 2^32 fragments or a table far past
// its end could end the whole process with "fatal error: out of memory", which no
// recover catches. checkSquashfs reads the superblock and the table indexes itself,
// bounded by the layer's size on the ISO, and refuses a layer whose claims no honest
// image makes, before go-diskfs sees it. The checks are the Linux kernel's own sanity
// checks (fs/squashfs/super.c, id.c, fragment.c, export.c, xattr_id.c) plus caps on
// the counts go-diskfs allocates from.

const (
	sqSuperblockSize = 96
	sqMagic          = 0x73717368 // "hsqs"
	sqInvalid        = ^uint64(0) // a table that is not there
	// A metadata block is at most 8 KiB of data after a 2-byte header.
	sqMetaSize = 8192
	// go-diskfs keeps a record per fragment; a fragment block holds the tail of at
	// least one file, and 2 Mi fragment blocks is 8 GiB of tails at the smallest block
	// size. The cap holds its fragment table under some 100 MiB.
	sqMaxFragments = 1 << 21
	// Inodes: far above any live root (a Debian one has a few hundred thousand, a
	// NixOS store about a million), low enough that counts bounded by it stay small.
	sqMaxInodes = 1 << 24
	// The smallest inode (a basic fifo or socket) is 20 bytes.
	sqMinInode = 20
	// Index entries of one table read at most: 8 bytes each, so 512 KiB.
	sqMaxIndex = 1 << 16
)

// sqSuperblock is what checkSquashfs reads of a squashfs superblock (squashfs 4.0).
type sqSuperblock struct {
	inodes, blockSize, fragments uint32
	compression, blockLog        uint16
	flags, ids                   uint16
	major, minor                 uint16
	bytesUsed                    uint64
	idTable, xattrTable          uint64
	inodeTable, directoryTable   uint64
	fragmentTable, exportTable   uint64
}

func parseSqSuperblock(b []byte) sqSuperblock {
	le := binary.LittleEndian
	return sqSuperblock{
		inodes: le.Uint32(b[4:]), blockSize: le.Uint32(b[12:]), fragments: le.Uint32(b[16:]),
		compression: le.Uint16(b[20:]), blockLog: le.Uint16(b[22:]), flags: le.Uint16(b[24:]),
		ids: le.Uint16(b[26:]), major: le.Uint16(b[28:]), minor: le.Uint16(b[30:]),
		bytesUsed: le.Uint64(b[40:]), idTable: le.Uint64(b[48:]), xattrTable: le.Uint64(b[56:]),
		inodeTable: le.Uint64(b[64:]), directoryTable: le.Uint64(b[72:]),
		fragmentTable: le.Uint64(b[80:]), exportTable: le.Uint64(b[88:]),
	}
}

const (
	sqFlagNoXattrs   = 0x0200
	sqFlagCompressOp = 0x0400
)

// sqHostile is the one-line error of a refused layer.
func sqHostile(format string, args ...any) error {
	return fmt.Errorf("%w: squashfs "+format, append([]any{ErrHostile}, args...)...)
}

// checkSquashfs checks the squashfs of size bytes that r holds (r reads the layer
// from its first byte) before go-diskfs reads it.
func checkSquashfs(r io.ReaderAt, size int64) error {
	b := make([]byte, sqSuperblockSize)
	if _, err := r.ReadAt(b, 0); err != nil {
		return sqHostile("superblock: %d-byte layer: %v", size, err)
	}
	if m := binary.LittleEndian.Uint32(b); m != sqMagic {
		return sqHostile("superblock: magic %#x, not %#x", m, sqMagic)
	}
	sb := parseSqSuperblock(b)
	if sb.major != 4 || sb.minor != 0 {
		return sqHostile("superblock: version %d.%d, not 4.0", sb.major, sb.minor)
	}
	if sb.blockSize < 4<<10 || sb.blockSize > 1<<20 || sb.blockSize&(sb.blockSize-1) != 0 {
		return sqHostile("superblock: block_size %d, not a power of two from 4096 to 1048576", sb.blockSize)
	}
	if want := uint16(bits.TrailingZeros32(sb.blockSize)); sb.blockLog != want {
		return sqHostile("superblock: block_log %d for block_size %d (want %d)", sb.blockLog, sb.blockSize, want)
	}
	// 1 gzip, 2 lzma, 3 lzo, 4 xz, 5 lz4, 6 zstd: what go-diskfs can decompress.
	if sb.compression < 1 || sb.compression > 6 {
		return sqHostile("superblock: compressor %d is none squashfs knows", sb.compression)
	}
	if sb.bytesUsed > uint64(size) {
		return sqHostile("superblock: bytes_used %d, but the layer on the ISO has %d bytes", sb.bytesUsed, size)
	}
	if sb.inodes == 0 || sb.inodes > sqMaxInodes {
		return sqHostile("superblock: inode count %d (1 to %d)", sb.inodes, sqMaxInodes)
	}
	if sb.ids == 0 {
		return sqHostile("superblock: id count 0 (the root's owner needs one)")
	}
	// Tables in the order mksquashfs writes and the kernel checks: inode table,
	// directory table, fragment table, export table, id table, xattr table, each
	// index after the metadata blocks it points to.
	first := uint64(sqSuperblockSize)
	if sb.flags&sqFlagCompressOp != 0 {
		first += 2 // at least the options' metadata block header
	}
	if sb.inodeTable < first || sb.inodeTable >= sb.bytesUsed {
		return sqHostile("superblock: inode_table_start %d outside the image (%d to bytes_used %d)", sb.inodeTable, first, sb.bytesUsed)
	}
	if sb.directoryTable <= sb.inodeTable || sb.directoryTable >= sb.bytesUsed {
		return sqHostile("superblock: directory_table_start %d not after inode_table_start %d and before bytes_used %d", sb.directoryTable, sb.inodeTable, sb.bytesUsed)
	}
	// The inode table holds the inodes the superblock counts, 8 KiB of them per
	// metadata block of at least 3 bytes.
	if maxInodes := (sb.directoryTable - sb.inodeTable) / 3 * (sqMetaSize / sqMinInode); uint64(sb.inodes) > maxInodes {
		return sqHostile("superblock: inode count %d, more than the %d-byte inode table holds", sb.inodes, sb.directoryTable-sb.inodeTable)
	}
	// Whatever follows a table's index bounds it (next is where it must end); walked
	// from the end of the image down, as the kernel does.
	next := sb.bytesUsed
	if sb.flags&sqFlagNoXattrs == 0 && sb.xattrTable != sqInvalid {
		kv, err := checkSqXattrs(r, sb, next)
		if err != nil {
			return err
		}
		next = kv
	}
	idx, err := checkSqIndex(r, "id", sb.directoryTable, sb.idTable, uint64(sb.ids)*4, next)
	if err != nil {
		return err
	}
	next = idx
	if sb.exportTable != sqInvalid {
		if idx, err = checkSqIndex(r, "export", sb.directoryTable, sb.exportTable, uint64(sb.inodes)*8, next); err != nil {
			return err
		}
		next = idx
	}
	if sb.fragments > 0 {
		if sb.fragments > sb.inodes || sb.fragments > sqMaxFragments {
			return sqHostile("superblock: fragment count %d, more than its %d inodes or the cap of %d", sb.fragments, sb.inodes, sqMaxFragments)
		}
		// The fragment table is the last one checked: nothing comes after its index.
		if _, err := checkSqIndex(r, "fragment", sb.directoryTable, sb.fragmentTable, uint64(sb.fragments)*16, next); err != nil {
			return err
		}
	}
	return nil
}

// checkSqIndex checks the table whose index of 8-byte pointers starts at start and
// which holds n bytes of entries in metadata blocks, ending at or before next: each
// pointer at or after lo (the directory table, which comes first) and after the one
// before by at most a metadata block, the last one's block
// ending at the index. It returns the table's first block, where the table before
// it must end.
func checkSqIndex(r io.ReaderAt, name string, lo, start, n, next uint64) (uint64, error) {
	return checkSqIndexBefore(r, name, lo, start, n, next, start)
}

// checkSqIndexBefore is checkSqIndex for a table whose last block ends at or before
// blocksEnd rather than at its index (the xattr id table has a header in between).
func checkSqIndexBefore(r io.ReaderAt, name string, lo, start, n, next, blocksEnd uint64) (uint64, error) {
	count := (n + sqMetaSize - 1) / sqMetaSize
	if count > sqMaxIndex {
		return 0, sqHostile("%s table: %d bytes of entries, more than any image has", name, n)
	}
	length := count * 8
	if start == sqInvalid || start >= next || length > next-start {
		return 0, sqHostile("%s table: its %d-byte index at %d runs past %d", name, length, start, next)
	}
	b := make([]byte, length)
	if _, err := r.ReadAt(b, int64(start)); err != nil {
		return 0, sqHostile("%s table: reading its index at %d: %v", name, start, err)
	}
	prev := lo
	for i := uint64(0); i < count; i++ {
		p := binary.LittleEndian.Uint64(b[i*8:])
		end := blocksEnd
		if i+1 < count {
			end = binary.LittleEndian.Uint64(b[(i+1)*8:])
		}
		// A metadata block is its 2-byte header and 1 to 8192 bytes.
		if p < prev || p >= end || end-p < 3 || end-p > sqMetaSize+2 {
			return 0, sqHostile("%s table: index entry %d points at %d, not one metadata block before %d", name, i, p, end)
		}
		prev = p
	}
	return binary.LittleEndian.Uint64(b), nil
}

// checkSqXattrs checks the xattr id table (a 16-byte header, then an index) and
// returns where the xattr key/value blocks start.
func checkSqXattrs(r io.ReaderAt, sb sqSuperblock, next uint64) (uint64, error) {
	if sb.xattrTable >= next || next-sb.xattrTable < 16 {
		return 0, sqHostile("xattr table: its header at %d runs past %d", sb.xattrTable, next)
	}
	h := make([]byte, 16)
	if _, err := r.ReadAt(h, int64(sb.xattrTable)); err != nil {
		return 0, sqHostile("xattr table: reading its header at %d: %v", sb.xattrTable, err)
	}
	kv, ids := binary.LittleEndian.Uint64(h), binary.LittleEndian.Uint32(h[8:])
	if ids == 0 {
		// go-diskfs reads nothing more; the kernel would refuse it, and so do we.
		return 0, sqHostile("xattr table: 0 ids in a table that is present")
	}
	first, err := checkSqIndexBefore(r, "xattr id", sb.directoryTable, sb.xattrTable+16, uint64(ids)*16, next, sb.xattrTable)
	if err != nil {
		return 0, err
	}
	// go-diskfs reads the key/value blocks one after the other from kv up to the id
	// blocks: they must be there, and in order.
	if kv >= first || kv < sb.directoryTable {
		return 0, sqHostile("xattr table: key/value blocks at %d, not between the directory table at %d and the id blocks at %d", kv, sb.directoryTable, first)
	}
	return kv, nil
}
