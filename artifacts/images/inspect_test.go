package images

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/artifacts/isoinspect/isotest"
)

// The fixture's own key check reads the ISO through the bounded reader too: a
// hostile image (here a 3.75 GiB path table claim, which go-diskfs allocated) is an
// error before the layer is looked for. No image is built.
func TestReadISORootKeyRefusesAHostileImage(t *testing.T) {
	b := isotest.New("HOSTILE")
	b.Dir(b.Root, b.Root, b.File("README.TXT;1", []byte("x")))
	binary.LittleEndian.PutUint32(b.VD(0)[132:], 0xF0000000)
	_, err := ReadISORootKey(b.Write(t, "hostile.iso"))
	if !errors.Is(err, isoinspect.ErrHostile) || !strings.Contains(err.Error(), "claims a 4026531840-byte path table") {
		t.Fatalf("ReadISORootKey = %v, want the path table claim refused", err)
	}
	// An honest image without the layer says so.
	b = isotest.New("OTHER")
	b.Dir(b.Root, b.Root, b.File("README.TXT;1", []byte("x")))
	_, err = ReadISORootKey(b.Write(t, "other.iso"))
	if err == nil || !strings.Contains(err.Error(), "has no /live/zz-config.squashfs (not a bootlab fixture ISO?)") {
		t.Fatalf("ReadISORootKey = %v, want the missing layer named", err)
	}
}
