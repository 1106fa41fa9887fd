package isoinspect

import (
	"encoding/binary"
	"fmt"
)

// readBootCatalog reads the El Torito boot catalog at sector: a validation entry, the
// default entry, then sections of entries (BIOS, EFI). Every entry's image must lie
// inside the image, a section cannot claim more entries than the catalog holds, and
// the catalog is read at most isoMaxCatalog sectors far.
func (img *isoImage) readBootCatalog(sector uint32) error {
	off := int64(sector) * isoSector
	if off >= img.size {
		return fmt.Errorf("%w: the catalog at sector %d lies past the end of the %d-byte image", ErrHostile, sector, img.size)
	}
	n := min(int64(isoMaxCatalog*isoSector), img.size-off) / 32 * 32
	if n < 64 {
		return fmt.Errorf("%w: the catalog at sector %d is cut off by the end of the image", ErrHostile, sector)
	}
	cat, err := img.readAt(off, n)
	if err != nil {
		return err
	}
	if cat[0] != 1 || cat[30] != 0x55 || cat[31] != 0xAA {
		return fmt.Errorf("%w: no validation entry at the start of the catalog (sector %d)", ErrHostile, sector)
	}
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}
	if sum != 0 {
		return fmt.Errorf("%w: the catalog's validation entry has a bad checksum", ErrHostile)
	}
	files := map[int64]string{}
	for _, e := range img.Entries {
		if _, ok := files[e.Offset]; !ok && e.Mode.IsRegular() && e.Size > 0 {
			files[e.Offset] = e.Path
		}
	}
	platform := cat[1]
	if err := img.bootEntry(cat[32:64], platform, files); err != nil {
		return fmt.Errorf("default entry: %w", err)
	}
	pos := 64
	for pos+32 <= len(cat) {
		h := cat[pos]
		if h != 0x90 && h != 0x91 {
			break // the rest of the catalog is unused
		}
		platform = cat[pos+1]
		count := int(binary.LittleEndian.Uint16(cat[pos+2:]))
		pos += 32
		for i := 0; i < count; i++ {
			if pos+32 > len(cat) {
				return fmt.Errorf("%w: a section claims %d entries, more than the catalog's %d bytes hold", ErrHostile, count, len(cat))
			}
			if err := img.bootEntry(cat[pos:pos+32], platform, files); err != nil {
				return fmt.Errorf("section entry %d: %w", i+1, err)
			}
			pos += 32
			for pos+32 <= len(cat) && cat[pos] == 0x44 {
				pos += 32 // extension entries of the one before
			}
		}
		if h == 0x91 {
			break
		}
	}
	return nil
}

// Sizes of the emulated floppies, by El Torito media type.
var floppyBytes = map[byte]int64{1: 1200 << 10, 2: 1440 << 10, 3: 2880 << 10}

func (img *isoImage) bootEntry(b []byte, platform byte, files map[int64]string) error {
	if b[0] != 0x88 && b[0] != 0 {
		return fmt.Errorf("%w: boot indicator %#x (0x88 or 0)", ErrHostile, b[0])
	}
	media := b[1] & 0x0f
	sectors := binary.LittleEndian.Uint16(b[6:])
	rba := binary.LittleEndian.Uint32(b[8:])
	if b[0] == 0 && rba == 0 {
		return nil // an unused slot
	}
	bi := BootImage{Bootable: b[0] == 0x88, Sector: rba, Sectors: sectors}
	switch platform {
	case 0:
		bi.Platform = "bios"
	case 0xef:
		bi.Platform = "efi"
	default:
		bi.Platform = fmt.Sprintf("%#x", platform)
	}
	length := int64(sectors) * 512
	switch media {
	case 0:
		bi.Media = "no emulation"
	case 1, 2, 3:
		bi.Media, length = "floppy", floppyBytes[media]
	case 4:
		bi.Media = "hard disk"
	default:
		return fmt.Errorf("%w: boot media type %d", ErrHostile, media)
	}
	if off := int64(rba) * isoSector; off >= img.size || length > img.size-off {
		return fmt.Errorf("%w: the boot image's %d bytes at sector %d run past the end of the %d-byte image", ErrHostile, length, rba, img.size)
	}
	bi.File = files[int64(rba)*isoSector]
	img.Boot = append(img.Boot, bi)
	return nil
}
