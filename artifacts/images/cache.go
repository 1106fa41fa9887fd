// Package images builds the boot images bootlab tests run: the busybox "mini" image on a
// Debian kernel, the Debian live fixture ISO carrying pre-nixos, and the upstream
// baselines (Debian installer netboot, Debian kernel series). Everything comes from
// Debian packages with ordinary tools and is cached outside the clone in a directory
// named by the sha256 of every input, so an unchanged image costs a stat, and a changed
// input can never be served a stale image.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// builderVersion is part of every cache key: bump it when a build step changes in a way
// the hashed inputs do not show (a different tool invocation, a new layout).
const builderVersion = "bootlab-images/1"

// Cache is the image cache root: built images, downloaded packages, the accelerator
// probe's verdicts. Every builder is a method of it, so where images go is always the
// caller's explicit choice (bootlab's config.Config.Cache, set once at the edge); this
// package reads no environment variable of bootlab's.
type Cache string

// dir is the cache root; an empty Cache is a caller's bug, and building into the
// working directory would litter a checkout, so it panics with what to do.
func (c Cache) dir() string {
	if c == "" {
		panic("images: empty Cache (pass config.Config.Cache)")
	}
	return string(c)
}

// Dir is the cache root, for what lives beside the images (root keys, probe verdicts,
// warm states).
func (c Cache) Dir() string { return c.dir() }

// hasher accumulates cache-key inputs with length prefixes so that two different input
// lists can never concatenate to the same byte stream.
type hasher struct{ h io.Writer }

func newHasher(kind string) (*hasher, func() string) {
	h := sha256.New()
	hs := &hasher{h: h}
	hs.add("builder", builderVersion)
	hs.add("kind", kind)
	return hs, func() string { return hex.EncodeToString(h.Sum(nil)) }
}

func (hs *hasher) add(name, value string) {
	fmt.Fprintf(hs.h, "%d:%s=%d:%s\n", len(name), name, len(value), value)
}

// fileSHA256 hashes a file's content.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// LockFile takes an exclusive flock on path (created if needed), waiting for ctx. The
// lock is advisory and dies with the process, so a crashed builder never wedges the cache.
func LockFile(ctx context.Context, path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	// Flock has no timeout; poll non-blocking so a cancelled ctx is honoured while
	// another process holds a long build.
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !logged {
			slog.Info("waiting for another builder of the same image", "lock", path)
			logged = true
		}
		if err := sleepCtx(ctx, 200); err != nil {
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, err)
		}
	}
}

// cached returns dir if it exists, else builds it: under a per-key lock, build fills a
// fresh temporary sibling which is then renamed into place, so readers only ever see a
// complete directory and concurrent builders of one key build it once.
func cached(ctx context.Context, dir string, build func(ctx context.Context, tmp string) error) error {
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return nil
	}
	parent, base := filepath.Split(filepath.Clean(dir))
	unlock, err := LockFile(ctx, filepath.Join(parent, "."+base+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return nil // another process built it while we waited
	}
	// Leftovers of builders that died half-way (we hold the lock, so none is live),
	// with whatever they left mounted detached first (removeBuildDir says why).
	if old, _ := filepath.Glob(filepath.Join(parent, ".tmp-"+base+"-*")); len(old) > 0 {
		for _, o := range old {
			if err := removeBuildDir(o); err != nil {
				slog.Warn("leaving a dead builder's directory", "err", err)
			}
		}
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+base+"-")
	if err != nil {
		return fmt.Errorf("creating build directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			if err := removeBuildDir(tmp); err != nil {
				slog.Warn("leaving a failed build's directory", "err", err)
			}
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("build directory permissions: %w", err)
	}
	if err := build(ctx, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("moving build into the cache: %w", err)
	}
	ok = true
	return nil
}

// shortHash is the key prefix used in directory names: long enough to never collide in
// one cache, short enough to read in logs.
func shortHash(h string) string { return h[:20] }

func cleanName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_', r == '+':
			return r
		}
		return '_'
	}, s)
}
