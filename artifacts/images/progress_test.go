package images

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/progress"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPackageDownloadShowsProgress: a Debian package download shows its elapsed time on
// the progress line while apt-get works, and a line with its size when it is in the
// cache. apt-cache and apt-get are stand-ins on PATH (no network, no apt state).
func TestPackageDownloadShowsProgress(t *testing.T) {
	bin := t.TempDir()
	write := func(name, script string) {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+script), 0o755))
	}
	write("apt-cache", `printf 'Package: busybox-static\nVersion: 1:1.36.1-9\nFilename: pool/main/b/busybox/busybox-static_1.36.1-9_amd64.deb\nSHA256: 00\n\n'`+"\n")
	// apt-get download: slow enough for a tick, then the file apt would write.
	write("apt-get", `sleep 1.3; head -c 5000 /dev/zero > busybox-static_1.36.1-9_amd64.deb`+"\n")
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))

	var out lockedBuffer
	SetProgress(progress.New(&out, true))
	defer SetProgress(nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path, d, err := Cache(t.TempDir()).fetchDeb(ctx, "busybox-static")
	require.NoError(t, err)
	require.Equal(t, "1:1.36.1-9", d.Version)
	require.FileExists(t, path)
	require.Contains(t, out.String(), "\r\x1b[Kdownloading busybox-static 1:1.36.1-9 (1s)", "the download ticks its elapsed time")
	require.True(t, strings.HasSuffix(out.String(), "\r\x1b[Kdownloaded busybox-static 1:1.36.1-9 (4 KiB)\n"), "%q", out.String())
}
