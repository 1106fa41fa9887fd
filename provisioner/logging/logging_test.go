package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecordShape(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, slog.LevelInfo).Info("pre_nixos.storage.device_filtered", "device", "/dev/sda")
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	assert.Equal(t, "pre_nixos.storage.device_filtered", rec["event"])
	assert.Equal(t, "/dev/sda", rec["device"])
	assert.Contains(t, rec["timestamp"], "Z")
	assert.NotContains(t, rec, "msg")
}

func TestOpenWritesStderrAndFileIdentically(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "var/log/pre-nixos/actions.log")
	var stderr bytes.Buffer
	log, c := Open(&stderr, file, slog.LevelInfo)
	log.Info("pre_nixos.test.one")
	require.NoError(t, c.Close())
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, stderr.String(), string(got))
	assert.Contains(t, string(got), `"event":"pre_nixos.test.one"`)
}

func TestOpenUnwritableFileFallsBackToStderr(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o600))
	var stderr bytes.Buffer
	log, _ := Open(&stderr, filepath.Join(blocker, "actions.log"), slog.LevelInfo)
	log.Info("pre_nixos.test.two")
	assert.Contains(t, stderr.String(), "failed to write log")
	assert.Contains(t, stderr.String(), "pre_nixos.test.two")
}

func TestEnabled(t *testing.T) {
	for v, want := range map[string]bool{"": true, "1": true, "0": false, " No ": false, "false": false, "yes": true} {
		assert.Equal(t, want, Enabled(func(string) string { return v }), "value %q", v)
	}
}
