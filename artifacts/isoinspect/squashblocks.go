package isoinspect

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"sync"

	"github.com/anchore/go-lzo"
	"github.com/diskfs/go-diskfs/backend"
	"github.com/klauspost/compress/zstd"
	lz4 "github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// go-diskfs decompresses every metadata and data block it reads whole, however large
// the result: a metadata block of at most 8 KiB on disk may say, in zstd, hundreds of
// MiB of zeros, and a directory listing reads thousands of blocks. The format caps a
// metadata block at 8 KiB and a data block at the block size once decompressed.
// go-diskfs reads each block's compressed bytes with one ReadAt before decompressing
// them, so sqBoundedStorage, the storage it is given, decompresses every read itself
// (bounded, with the same decompressor) first and fails a read whose bytes would
// decompress past the larger of the two: go-diskfs never sees them.
type sqBoundedStorage struct {
	backend.Storage
	start, end  int64 // the layer in the image
	compression uint16
	limit       int64

	mu      sync.Mutex
	refused error
}

func newSqBoundedStorage(b backend.Storage, start, size int64, sb sqSuperblock) *sqBoundedStorage {
	return &sqBoundedStorage{Storage: b, start: start, end: start + size, compression: sb.compression, limit: max(int64(sb.blockSize), sqMetaSize)}
}

func (s *sqBoundedStorage) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.Storage.ReadAt(p, off)
	// The 2-byte metadata headers and 8-byte index entries cannot hold a stream
	// that decompresses to more than the limit.
	if n > 8 && off >= s.start && off < s.end {
		if got := sqDecompressedSize(s.compression, p[:n], s.limit); got > s.limit {
			e := fmt.Errorf("%w: squashfs block of %d bytes at byte %d of the layer decompresses to more than %d bytes", ErrHostile, n, off-s.start, s.limit)
			s.mu.Lock()
			if s.refused == nil {
				s.refused = e
			}
			s.mu.Unlock()
			return 0, e
		}
	}
	return n, err
}

// err is the first block refused, if any.
func (s *sqBoundedStorage) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// sqDecompressedSize is how many bytes in decompresses to with the squashfs
// compressor, reading at most limit+1 of them; 0 when in is not a stream of it (an
// uncompressed block, a header, an index).
func sqDecompressedSize(compression uint16, in []byte, limit int64) int64 {
	var (
		r   io.Reader
		err error
	)
	src := bytes.NewReader(in)
	switch compression {
	case 1:
		var z io.ReadCloser
		if z, err = zlib.NewReader(src); err == nil {
			defer z.Close()
			r = z
		}
	case 2:
		r, err = lzma.NewReader(src)
	case 3:
		r = lzo.NewReader(src)
	case 4:
		r, err = xz.NewReader(src)
	case 5:
		r = lz4.NewReader(src)
	case 6:
		var z *zstd.Decoder
		if z, err = zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true)); err == nil {
			defer z.Close()
			r = z
		}
	}
	if err != nil || r == nil {
		return 0
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(r, limit+1))
	return n
}
