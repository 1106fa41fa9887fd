package images

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
)

// DebianInstallerModule returns the path of kernel module name (e.g.
// "drivers/block/virtio_blk.ko") built for the installer's kernel release (the first
// word of its version, e.g. "6.1.0-50-amd64"), taken from the linux-image package of
// that release. The netboot initrd carries no block drivers at all: the installer's
// disk-detect loads them from udebs it downloads, which an offline VM cannot do. The
// module comes from the very build the installer kernel is (same ABI, same version),
// so loading it is what disk-detect would have done.
func (c Cache) DebianInstallerModule(ctx context.Context, release, name string) (string, error) {
	pkg := "linux-image-" + release
	d, err := c.resolveDeb(ctx, pkg)
	if err != nil {
		return "", fmt.Errorf("finding the kernel package of the installer's kernel %s: %w", release, err)
	}
	base := filepath.Base(name)
	dir := filepath.Join(c.dir(), "netboot-modules", cleanName(release)+"-"+cleanName(base)+"-"+d.SHA256[:16])
	err = cached(ctx, dir, func(ctx context.Context, tmp string) error {
		deb, _, err := c.fetchDeb(ctx, pkg)
		if err != nil {
			return err
		}
		slog.Info("unpacking kernel module for the installer", "module", name, "package", pkg, "version", d.Version)
		return extractMembers(ctx, deb, map[string]string{
			"lib/modules/" + release + "/kernel/" + name: filepath.Join(tmp, base),
		})
	})
	if err != nil {
		return "", fmt.Errorf("preparing %s for the installer's kernel %s: %w", name, release, err)
	}
	return filepath.Join(dir, base), nil
}
