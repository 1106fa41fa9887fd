package isoinspect

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/runrec"
)

// Provenance describes an ISO for metadata.json: path, size, sha256, the root key
// fingerprint, and, when the file lives in a Nix store, the store path, deriver and
// narHash (asked of nix-store if it is installed; absent otherwise, never an error).
func Provenance(ctx context.Context, isoPath string) (runrec.Image, error) {
	img := runrec.Image{Kind: "iso"}
	abs, err := filepath.Abs(isoPath)
	if err != nil {
		return img, fmt.Errorf("image provenance: %w", err)
	}
	img.Path = abs
	img.Size, img.SHA256, err = runrec.HashFile(abs)
	if err != nil {
		return img, fmt.Errorf("image provenance: %w", err)
	}
	key, err := RootKey(ctx, abs)
	if err != nil {
		return img, fmt.Errorf("image provenance: %w", err)
	}
	if key != nil {
		img.RootKeyFingerprint = key.Fingerprint
	}
	nixProvenance(ctx, abs, &img)
	return img, nil
}

// KernelProvenance describes a kernel + initrd boot for metadata.json.
func KernelProvenance(ctx context.Context, kernel, initrd, cmdline string) (runrec.Image, error) {
	img := runrec.Image{Kind: "kernel", Append: cmdline}
	var err error
	if img.Path, err = filepath.Abs(kernel); err != nil {
		return img, fmt.Errorf("kernel provenance: %w", err)
	}
	if img.Size, img.SHA256, err = runrec.HashFile(img.Path); err != nil {
		return img, fmt.Errorf("kernel provenance: %w", err)
	}
	if initrd != "" {
		if img.Initrd, err = filepath.Abs(initrd); err != nil {
			return img, fmt.Errorf("kernel provenance: %w", err)
		}
		if _, img.InitrdSHA256, err = runrec.HashFile(img.Initrd); err != nil {
			return img, fmt.Errorf("kernel provenance: %w", err)
		}
		rep, err := InspectKernel(ctx, "", img.Initrd)
		if err != nil {
			return img, fmt.Errorf("kernel provenance: %w", err)
		}
		if rep.RootKey != nil {
			img.RootKeyFingerprint = rep.RootKey.Fingerprint
		}
	}
	nixProvenance(ctx, img.Path, &img)
	return img, nil
}

// StorePathOf returns the /nix/store/<hash>-<name> prefix of p after resolving
// symlinks (`result/iso/x.iso` is a link into the store), or "".
func StorePathOf(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	const store = "/nix/store/"
	if !strings.HasPrefix(p, store) {
		return ""
	}
	rest := strings.TrimPrefix(p, store)
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	if rest == "" {
		return ""
	}
	return store + rest
}

func nixProvenance(ctx context.Context, p string, img *runrec.Image) {
	sp := StorePathOf(p)
	if sp == "" {
		return
	}
	img.StorePath = sp
	if _, err := exec.LookPath("nix-store"); err != nil {
		return
	}
	q := func(flag string) string {
		c, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(c, "nix-store", "--query", flag, sp).Output()
		if err != nil {
			return ""
		}
		v := strings.TrimSpace(string(out))
		if v == "unknown-deriver" {
			return ""
		}
		return v
	}
	img.Deriver = q("--deriver")
	img.NarHash = q("--hash")
}
