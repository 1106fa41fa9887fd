package bisect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/bootlab/bootlab/artifacts/cacheprune"
	"github.com/bootlab/bootlab/artifacts/images"
)

// Downloader is a Prober that says where url= candidates are downloaded (Config.FetchDir
// when that is empty): the image cache's download directory
// (cacheprune.DownloadDir(cache)), so `bootlab cache` lists them and `bootlab cache
// prune` bounds them.
type Downloader interface {
	DownloadDir() string
}

// ErrDigest is a download whose sha256 is not the one the candidate names: the file is
// deleted and the bisection stops, since nothing unverified may boot.
var ErrDigest = errors.New("sha256 mismatch")

// Fetch makes a url= candidate an iso= one: the ISO is downloaded into dir as
// <sha256>.iso the first time any probe needs it (a bisection that settles in a few
// probes downloads only those candidates), verified against c.SHA256 while it is
// written, and renamed into place only when it matches. An ISO already there is
// reused (and marked used for the cache's pruning). Other candidates are returned as
// they are. Concurrent probes of one ISO download it once (a lock per digest).
func Fetch(ctx context.Context, c Candidate, dir string) (Candidate, error) {
	if c.URL == "" {
		return c, nil
	}
	if dir == "" {
		return c, fmt.Errorf("downloading %s: no download directory (Config.FetchDir or the prober's DownloadDir)", c.URL)
	}
	path := filepath.Join(dir, c.SHA256+".iso")
	done := func() (Candidate, error) {
		cacheprune.Touch(path)
		c.ISO = path
		return c, nil
	}
	if _, err := os.Stat(path); err == nil {
		return done()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return c, fmt.Errorf("creating the download directory: %w", err)
	}
	unlock, err := images.LockFile(ctx, filepath.Join(dir, "."+c.SHA256+".iso.lock"))
	if err != nil {
		return c, err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return done() // another probe downloaded it while we waited
	}
	if err := download(ctx, c, dir, path); err != nil {
		return c, err
	}
	return done()
}

func download(ctx context.Context, c Candidate, dir, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return fmt.Errorf("downloading %s for %s: %w", c.URL, c.Name, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("downloading %s for %s: %w", c.URL, c.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("downloading %s for %s: %s", c.URL, c.Name, resp.Status)
	}
	tmp, err := os.CreateTemp(dir, ".dl-"+c.SHA256[:12]+"-")
	if err != nil {
		return fmt.Errorf("creating the download file: %w", err)
	}
	ok := false
	defer func() {
		tmp.Close()
		if !ok {
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), resp.Body); err != nil {
		return fmt.Errorf("downloading %s for %s: %w", c.URL, c.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != c.SHA256 {
		return fmt.Errorf("%w: %s (%s) has sha256 %s, the candidate list says %s; refusing to boot it: %w",
			ErrDigest, c.URL, c.Name, got, c.SHA256, ErrAbort)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("moving the download into place: %w", err)
	}
	ok = true
	return nil
}
