package images

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
)

// ISOLayerPath and ISORootKeyPath say where the fixture ISO keeps root's key: in the
// small squashfs layer live-boot stacks over the base, at the path pre-nixos reads.
const (
	ISOLayerPath   = "/live/zz-config.squashfs"
	ISORootKeyPath = "/etc/pre-nixos/root_key.pub"
)

// ReadISORootKey reads the embedded root public key out of a fixture ISO the way the
// guest sees it (ISO9660 -> squashfs layer -> file), without mounting anything, so an
// inspection proves what a booted machine would trust.
func ReadISORootKey(isoPath string) (string, error) {
	layer, err := readISOFile(isoPath, ISOLayerPath)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp("", "bootlab-layer-*.squashfs")
	if err != nil {
		return "", fmt.Errorf("staging the config layer: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(layer); err != nil {
		tmp.Close()
		return "", fmt.Errorf("staging the config layer: %w", err)
	}
	tmp.Close()
	b, err := file.OpenFromPath(tmp.Name(), true)
	if err != nil {
		return "", fmt.Errorf("opening the config layer: %w", err)
	}
	defer b.Close()
	sq, err := squashfs.Read(b, int64(len(layer)), 0, 0)
	if err != nil {
		return "", fmt.Errorf("reading the config layer of %s as squashfs: %w", filepath.Base(isoPath), err)
	}
	// go-diskfs's squashfs wants paths relative to the root.
	f, err := sq.OpenFile(strings.TrimPrefix(ISORootKeyPath, "/"), os.O_RDONLY)
	if err != nil {
		return "", fmt.Errorf("%s has no %s in %s: %w", filepath.Base(isoPath), ISORootKeyPath, ISOLayerPath, err)
	}
	key, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("reading %s from the config layer: %w", ISORootKeyPath, err)
	}
	return strings.TrimSpace(string(key)), nil
}

func readISOFile(isoPath, name string) ([]byte, error) {
	st, err := os.Stat(isoPath)
	if err != nil {
		return nil, fmt.Errorf("inspecting ISO: %w", err)
	}
	b, err := file.OpenFromPath(isoPath, true)
	if err != nil {
		return nil, fmt.Errorf("opening ISO %s: %w", isoPath, err)
	}
	defer b.Close()
	fs, err := iso9660.Read(b, st.Size(), 0, 2048)
	if err != nil {
		return nil, fmt.Errorf("reading %s as ISO9660: %w", isoPath, err)
	}
	f, err := fs.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("%s has no %s (not a bootlab fixture ISO?): %w", filepath.Base(isoPath), name, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s from %s: %w", name, filepath.Base(isoPath), err)
	}
	return data, nil
}
