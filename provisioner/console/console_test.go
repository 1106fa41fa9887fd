package console

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/provisioner/console/consoletest"
)

func TestTargets(t *testing.T) {
	dir := t.TempDir()
	active := filepath.Join(dir, "active")
	require.NoError(t, os.WriteFile(active, []byte("tty0 ttyS0 tty0\n"), 0o644))
	assert.Equal(t, []string{"/dev/tty0", "/dev/ttyS0", "/tmp/x", "/dev/console"}, Targets(active, "/tmp/x", "/dev/console"))
	assert.Equal(t, []string{"/dev/console"}, Targets(filepath.Join(dir, "missing")))
}

func TestBroadcast(t *testing.T) {
	a, b := consoletest.New(t), consoletest.New(t)
	missing := filepath.Join(t.TempDir(), "ttyS9")
	rs := Broadcast(context.Background(), "LAN IPv4 address: 198.51.100.7", []string{a.Path, b.Path, missing}, time.Second)
	for _, tty := range []*consoletest.TTY{a, b} {
		assert.Equal(t, "LAN IPv4 address: 198.51.100.7\r\n", tty.WaitFor(t, "\r\n"))
	}
	assert.True(t, rs[0].OK)
	assert.True(t, rs[1].OK)
	assert.False(t, rs[2].OK)
	assert.NoFileExists(t, missing, "a missing console must never be created")
	assert.True(t, AnyOK(rs))
	assert.False(t, AnyOK(rs[2:]))
}

// Issue 24 item 8: only character devices are consoles. A regular file, a
// directory or a block device named by the active file is never written.
func TestBroadcastOnlyToCharDevices(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(file, []byte("data"), 0o600))
	targets := []string{file, dir}
	blk := filepath.Join(dir, "vda")
	// A block device node needs CAP_MKNOD; without it the regular file
	// stands for every non-console.
	if err := unix.Mknod(blk, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 250))); err == nil {
		targets = append(targets, blk)
	}
	tty := consoletest.New(t)
	rs := Broadcast(context.Background(), "banner", append(targets, tty.Path), time.Second)
	for i := range targets {
		assert.False(t, rs[i].OK, targets[i])
		assert.Contains(t, rs[i].Err, "not a character device", targets[i])
	}
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "data", string(got), "a regular file named as a console is untouched")
	assert.True(t, rs[len(targets)].OK)
	assert.Contains(t, tty.WaitFor(t, "banner"), "banner\r\n")
}

// A FIFO with no reader blocks a plain open forever; O_NONBLOCK makes it
// fail at once (ENXIO), and the timeout is the backstop.
func TestBroadcastNeverBlocks(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, mkfifo(fifo))
	start := time.Now()
	rs := Broadcast(context.Background(), "x", []string{fifo}, 200*time.Millisecond)
	assert.Less(t, time.Since(start), time.Second)
	assert.False(t, rs[0].OK)
}
