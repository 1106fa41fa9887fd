// Package atomicfile replaces files so that a reader, or a crash at any point, sees
// either the old content or the new, never a mix: a temporary file in the same
// directory, fsync, rename over it, fsync the directory so the rename itself survives a
// power cut.
//
// It is a leaf shared by artifacts and harness (the arrows run scenarios -> harness ->
// artifacts, so the one copy lives here). The provisioner keeps its own (see
// docs/decisions.md): it imports none of bootlab's packages.
package atomicfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces path with data, mode perm. The directory must exist.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteWith(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// WriteJSON replaces path with v as indented JSON and a final newline, mode 0644,
// creating the directory when missing.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	return Write(path, append(b, '\n'), 0o644)
}

// WriteWith replaces path with what fill writes to the temporary file, mode perm. When
// fill fails, path keeps its old content and no temporary file is left (tests pass a
// fill that dies halfway; streaming writers such as io.Copy or a template use it too).
func WriteWith(path string, perm os.FileMode, fill func(f *os.File) error) error {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := fill(f); err != nil {
		return fail(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory of %s: %w", path, err)
	}
	defer d.Close()
	// Some file systems (tmpfs on old kernels, 9p) refuse fsync on a directory.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("syncing directory of %s: %w", path, err)
	}
	return nil
}
