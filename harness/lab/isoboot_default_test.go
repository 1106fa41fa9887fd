package lab

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/vm"
)

// An image whose builder supplied the ISO's kernel and initrd (the fixture) boots
// directly under auto, without reading the menu; --boot firmware drops them so QEMU
// boots the CD through the firmware.
func TestISOBootKeepsTheBuildersDirectBoot(t *testing.T) {
	dir := t.TempDir()
	iso := filepath.Join(dir, "not-really.iso")
	require.NoError(t, os.WriteFile(iso, []byte("x"), 0o644))
	img := vm.Image{ISO: iso, Kernel: "/k", Initrd: "/i", Append: "boot=live console=ttyS0"}
	b, err := ResolveISOBoot(context.Background(), images.Cache(dir), &img, BootAuto, "")
	require.NoError(t, err)
	require.Equal(t, BootDirect, b.Path)
	require.Equal(t, "/k", img.Kernel)
	require.Equal(t, "boot=live console=ttyS0", img.Append)

	fw := vm.Image{ISO: iso, Kernel: "/k", Initrd: "/i", Append: "boot=live"}
	_, err = ResolveISOBoot(context.Background(), images.Cache(dir), &fw, BootFirmware, "")
	require.Error(t, err, "the menu of a file that is no ISO cannot be read")
	require.Empty(t, fw.Kernel+fw.Initrd+fw.Append, "through the firmware, no kernel of the builder's is left for QEMU to boot")
}
