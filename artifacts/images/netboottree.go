package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/bootlab/bootlab/artifacts/cacheprune"
)

// netbootTextPrefix is the text-frontend netboot tree inside the package: what a TFTP
// server serves, and what Debian's mini.iso is made of.
const netbootTextPrefix = "usr/lib/debian-installer/images/12/amd64/text/"

// DebianInstallerNetbootTree unpacks the whole text-frontend netboot tree of the
// debian-installer-12-netboot-amd64 package (pxelinux.cfg/default, the ISOLINUX menu
// files under debian-installer/amd64/boot-screens, the GRUB config, the kernel and
// initrd), cached by the package's SHA256, and returns its directory. Tests build an
// ISO laid out like Debian's mini.iso from it, with the menu files unchanged.
func (c Cache) DebianInstallerNetbootTree(ctx context.Context) (string, error) {
	d, err := c.resolveDeb(ctx, netbootPackage)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(c.dir(), "netboot-tree", cleanName(d.Version)+"-"+d.SHA256[:16])
	err = cached(ctx, dir, func(ctx context.Context, tmp string) error {
		deb, _, err := c.fetchDeb(ctx, netbootPackage)
		if err != nil {
			return err
		}
		return extractPrefix(ctx, deb, netbootTextPrefix, tmp)
	})
	if err != nil {
		return "", fmt.Errorf("preparing the Debian installer netboot tree: %w", err)
	}
	cacheprune.Touch(dir) // the recent-use mark bootlab cache prune keeps by
	return dir, nil
}

// extractPrefix copies the regular files and directories under prefix in a .deb's
// filesystem into dir, keeping their layout (symlinks are skipped: the tree has none
// that matter, and following one out of dir must never happen).
func extractPrefix(ctx context.Context, deb, prefix, dir string) error {
	if err := needTools("dpkg-deb"); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("running dpkg-deb: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running dpkg-deb: %w", err)
	}
	n := 0
	tr := tar.NewReader(pipe)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("reading %s: %w", filepath.Base(deb), err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		rel, ok := strings.CutPrefix(name, prefix)
		if !ok || rel == "" || strings.HasPrefix(path.Clean(rel), "..") {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(path.Clean(rel)))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
				err = copyToFile(dst, tr, 0o644)
			}
			n++
		}
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("extracting %s: %w", name, err)
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", filepath.Base(deb), err, stderr.String())
	}
	if n == 0 {
		return fmt.Errorf("%s has nothing under %s", filepath.Base(deb), prefix)
	}
	return nil
}
