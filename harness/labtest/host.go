package labtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// HostTool fails the test, saying what to install, when a host command is missing.
func HostTool(t testing.TB, name, pkg string) {
	t.Helper()
	_, err := exec.LookPath(name)
	require.NoError(t, err, "%s not found on PATH: install it with `apt-get install %s`", name, pkg)
}

// SeedExt4 is a lab.Disk Seed: an ext4 file system labelled label on the whole disk
// image, holding one file, made from the host (mke2fs on a file, debugfs to write: no
// loop device or root needed).
func SeedExt4(label, name, content string) func(ctx context.Context, path string) error {
	return func(ctx context.Context, path string) error {
		if err := hostRun(ctx, "mkfs.ext4", "-q", "-F", "-L", label, path); err != nil {
			return err
		}
		src := filepath.Join(filepath.Dir(path), name+".src")
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			return err
		}
		defer os.Remove(src)
		return hostRun(ctx, "debugfs", "-w", "-R", "write "+src+" "+name, path)
	}
}

// ReadExt4File reads a file from the ext4 file system on a disk image, from the host.
func ReadExt4File(t testing.TB, image, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// debugfs prints its banner on stderr: stdout is the file.
	out, err := exec.CommandContext(ctx, "debugfs", "-R", "cat "+name, image).Output()
	require.NoError(t, err, "debugfs cat %s on %s", name, image)
	return string(out)
}

func hostRun(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
