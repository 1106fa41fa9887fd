//go:build !linux

package images

import "errors"

// detachMount: building images needs Linux; elsewhere no build leaves a mount.
func detachMount(path string) error { return errors.New("unmounting needs Linux") }
