package console

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTargets(t *testing.T) {
	dir := t.TempDir()
	active := filepath.Join(dir, "active")
	require.NoError(t, os.WriteFile(active, []byte("tty0 ttyS0 tty0\n"), 0o644))
	assert.Equal(t, []string{"/dev/tty0", "/dev/ttyS0", "/tmp/x", "/dev/console"}, Targets(active, "/tmp/x", "/dev/console"))
	assert.Equal(t, []string{"/dev/console"}, Targets(filepath.Join(dir, "missing")))
}

func TestBroadcast(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		require.NoError(t, os.WriteFile(p, nil, 0o600))
	}
	missing := filepath.Join(dir, "ttyS9")
	rs := Broadcast(context.Background(), "LAN IPv4 address: 198.51.100.7", []string{a, b, missing}, time.Second)
	for _, p := range []string{a, b} {
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "LAN IPv4 address: 198.51.100.7\r\n", string(got))
	}
	assert.True(t, rs[0].OK)
	assert.True(t, rs[1].OK)
	assert.False(t, rs[2].OK)
	assert.NoFileExists(t, missing, "a missing console must never be created")
	assert.True(t, AnyOK(rs))
	assert.False(t, AnyOK(rs[2:]))
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
