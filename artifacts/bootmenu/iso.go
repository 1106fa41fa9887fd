package bootmenu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
	"github.com/bootlab/bootlab/artifacts/cacheprune"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
)

// MaxBootFile bounds a kernel or initrd copied out of an ISO (real ones are tens of
// MiB; NixOS's initrd is about 100).
const MaxBootFile = 2 << 30

// withISO opens isoPath through isoinspect's bounded ISO9660 reader (the only one
// bootlab has: an ISO is input we did not write, and these reads come before any
// other) and hands it to fn as an fs.FS. The reader's errors name the image already.
func withISO(ctx context.Context, isoPath string, fn func(fs.FS) error) error {
	iso, err := isoinspect.OpenISO(ctx, isoPath)
	if err != nil {
		return err
	}
	defer iso.Close()
	if err := fn(iso); err != nil {
		return fmt.Errorf("%s: %w", isoPath, err)
	}
	return nil
}

// ReadISO reads every boot menu of the ISO at isoPath. An error wrapping
// isoinspect.ErrHostile is an image no honest tool writes.
func ReadISO(ctx context.Context, isoPath string) ([]*Menu, error) {
	var menus []*Menu
	err := withISO(ctx, isoPath, func(fsys fs.FS) error {
		var err error
		menus, err = Find(fsys)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the boot menu: %w", err)
	}
	return menus, nil
}

// Extracted is an entry's kernel and initrd copied into the image cache.
type Extracted struct {
	Kernel string `json:"kernel"`
	// Initrd is the entry's initrds concatenated (as GRUB and ISOLINUX load several),
	// or "" when it has none.
	Initrd    string `json:"initrd,omitempty"`
	ISOSHA256 string `json:"iso_sha256"`
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Extract copies e's kernel and initrds out of the ISO into cacheDir, keyed by the
// ISO's SHA-256 and the entry, and reuses them when present.
func Extract(ctx context.Context, isoPath string, e Entry, cacheDir string) (*Extracted, error) {
	if !e.Bootable() {
		return nil, fmt.Errorf("entry %q cannot be booted directly: %s", e.Label, strings.Join(e.Unresolved, "; "))
	}
	sum, err := isoSHA256(ctx, isoPath, filepath.Join(cacheDir, "sums"))
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s\n", len(e.Kernel), e.Kernel)
	for _, r := range e.Initrds {
		fmt.Fprintf(h, "%d:%s\n", len(r), r)
	}
	name := sum[:20] + "-" + strings.Trim(unsafeChars.ReplaceAllString(e.Label, "_"), "_")
	if len(name) > 80 {
		name = name[:80]
	}
	dir := filepath.Join(cacheDir, name+"-"+hex.EncodeToString(h.Sum(nil))[:12])
	out := &Extracted{Kernel: filepath.Join(dir, "kernel"), ISOSHA256: sum}
	if len(e.Initrds) > 0 {
		out.Initrd = filepath.Join(dir, "initrd")
	}
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		cacheprune.Touch(dir) // the recent-use mark bootlab cache prune keeps by
		return out, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", cacheDir, err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".extract-")
	if err != nil {
		return nil, fmt.Errorf("creating a directory in %s: %w", cacheDir, err)
	}
	defer os.RemoveAll(tmp)
	err = withISO(ctx, isoPath, func(fsys fs.FS) error {
		if err := copyOut(ctx, fsys, e.Kernel, filepath.Join(tmp, "kernel"), false); err != nil {
			return err
		}
		for _, r := range e.Initrds {
			if err := copyOut(ctx, fsys, r, filepath.Join(tmp, "initrd"), true); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("extracting entry %q from %s: %w", e.Label, isoPath, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another run extracted the same entry first: its copy is as good as ours.
		if _, serr := os.Stat(filepath.Join(dir, ".complete")); serr == nil {
			return out, nil
		}
		return nil, fmt.Errorf("storing the extracted entry in %s: %w", dir, err)
	}
	return out, nil
}

// copyOut copies one file from the ISO. Appended initrds are padded to 4 bytes first,
// as GRUB does, so that the kernel finds each cpio archive's header aligned.
func copyOut(ctx context.Context, fsys fs.FS, p, dst string, appendTo bool) error {
	name, ok := Exists(fsys, p)
	if !ok {
		return fmt.Errorf("%s is not on the ISO", p)
	}
	in, err := fsys.Open(name)
	if err != nil {
		return fmt.Errorf("opening %s on the ISO: %w", p, err)
	}
	defer in.Close()
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	out, err := os.OpenFile(dst, flags, 0o644)
	if err != nil {
		return fmt.Errorf("creating %s: %w", dst, err)
	}
	defer out.Close()
	if st, err := out.Stat(); err == nil && st.Size()%4 != 0 {
		if _, err := out.Write(make([]byte, 4-st.Size()%4)); err != nil {
			return fmt.Errorf("writing %s: %w", dst, err)
		}
	}
	n, err := io.Copy(out, &ctxReader{ctx: ctx, r: io.LimitReader(in, MaxBootFile+1)})
	if err != nil {
		return fmt.Errorf("copying %s from the ISO: %w", p, err)
	}
	if n > MaxBootFile {
		return fmt.Errorf("%s is larger than %d bytes: %w", p, int64(MaxBootFile), ErrLimit)
	}
	return out.Close()
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// isoSHA256 hashes the ISO, remembering the sum per (path, size, mtime) in sumsDir so
// that booting the same multi-GiB ISO again does not read it twice.
func isoSHA256(ctx context.Context, isoPath, sumsDir string) (string, error) {
	abs, err := filepath.Abs(isoPath)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", isoPath, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", isoPath, err)
	}
	k := sha256.Sum256([]byte(abs + "\x00" + strconv.FormatInt(st.Size(), 10) + "\x00" + strconv.FormatInt(st.ModTime().UnixNano(), 10)))
	memo := filepath.Join(sumsDir, hex.EncodeToString(k[:])[:32])
	if b, err := os.ReadFile(memo); err == nil && len(b) == 64 {
		return string(b), nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", isoPath, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: f}); err != nil {
		return "", fmt.Errorf("hashing %s: %w", isoPath, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := os.MkdirAll(sumsDir, 0o755); err == nil {
		// A memo is a cache: failing to write it only costs a rehash next time.
		_ = atomicfile.Write(memo, []byte(sum), 0o644)
	}
	return sum, nil
}
