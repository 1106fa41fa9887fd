package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"

	"github.com/bootlab/bootlab/artifacts/isoinspect"
)

// ISOLayerPath and ISORootKeyPath say where the fixture ISO keeps root's key: in the
// small squashfs layer live-boot stacks over the base, at the path pre-nixos reads.
const (
	ISOLayerPath   = "/live/zz-config.squashfs"
	ISORootKeyPath = "/etc/pre-nixos/root_key.pub"
)

// ReadISORootKey reads the embedded root public key out of a fixture ISO the way the
// guest sees it (ISO9660 -> squashfs layer -> file), without mounting anything, so an
// inspection proves what a booted machine would trust. The ISO is read through the
// bounded reader every ISO read goes through (isoinspect), and the layer in place.
func ReadISORootKey(isoPath string) (string, error) {
	iso, err := isoinspect.OpenISO(context.Background(), isoPath)
	if err != nil {
		return "", fmt.Errorf("inspecting ISO: %w", err)
	}
	defer iso.Close()
	off, size, err := iso.Extent(strings.TrimPrefix(ISOLayerPath, "/"))
	if err != nil {
		return "", fmt.Errorf("%s has no %s (not a bootlab fixture ISO?): %w", filepath.Base(isoPath), ISOLayerPath, err)
	}
	b, err := file.OpenFromPath(isoPath, true)
	if err != nil {
		return "", fmt.Errorf("opening ISO %s: %w", isoPath, err)
	}
	defer b.Close()
	sq, err := squashfs.Read(b, size, off, 0)
	if err != nil {
		return "", fmt.Errorf("reading the config layer of %s as squashfs: %w", filepath.Base(isoPath), err)
	}
	// go-diskfs's squashfs wants paths relative to the root.
	f, err := sq.OpenFile(strings.TrimPrefix(ISORootKeyPath, "/"), os.O_RDONLY)
	if err != nil {
		return "", fmt.Errorf("%s has no %s in %s: %w", filepath.Base(isoPath), ISORootKeyPath, ISOLayerPath, err)
	}
	key, err := io.ReadAll(io.LimitReader(f, isoinspect.MaxKeyFile+1))
	if err != nil {
		return "", fmt.Errorf("reading %s from the config layer: %w", ISORootKeyPath, err)
	}
	if len(key) > isoinspect.MaxKeyFile {
		return "", fmt.Errorf("%s in the config layer of %s is larger than %d bytes", ISORootKeyPath, filepath.Base(isoPath), isoinspect.MaxKeyFile)
	}
	return strings.TrimSpace(string(key)), nil
}
