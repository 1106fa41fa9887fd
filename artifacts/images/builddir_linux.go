package images

import "golang.org/x/sys/unix"

// detachMount lazily unmounts path: whatever still has a file open there keeps it,
// and the directory below stops showing the mounted tree at once.
func detachMount(path string) error { return unix.Unmount(path, unix.MNT_DETACH) }
