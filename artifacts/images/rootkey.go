package images

import (
	"path/filepath"

	"github.com/bootlab/bootlab/artifacts/keys"
)

// RootKey is the key pair embedded in bootlab-built images, kept in the cache (private
// half 0600, never in run directories): the images and the key that opens them live
// and go together.
func (c Cache) RootKey() (*keys.Pair, error) {
	return keys.LoadOrCreate(filepath.Join(c.dir(), "keys"))
}
