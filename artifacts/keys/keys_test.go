package keys

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCreateIsPrivateAndStable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	p, err := LoadOrCreate(dir)
	require.NoError(t, err)
	st, err := os.Stat(p.PrivatePath)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	dst, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), dst.Mode().Perm())
	again, err := LoadOrCreate(dir)
	require.NoError(t, err)
	require.Equal(t, p.Fingerprint, again.Fingerprint, "the key is reused, so images need not be rebuilt")
	fp, err := Fingerprint(p.AuthorizedKey)
	require.NoError(t, err)
	require.Equal(t, p.Fingerprint, fp)
	require.Regexp(t, `^SHA256:[A-Za-z0-9+/]{43}$`, fp)
}

func TestConcurrentCreatorsAgree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var wg sync.WaitGroup
	fps := make([]string, 8)
	for i := range fps {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := LoadOrCreate(dir)
			if err != nil {
				t.Errorf("creator %d: %v", i, err)
				return
			}
			fps[i] = p.Fingerprint
		}(i)
	}
	wg.Wait()
	final, err := Load(filepath.Join(dir, "id_ed25519"))
	require.NoError(t, err)
	for _, fp := range fps {
		require.Equal(t, final.Fingerprint, fp)
	}
}

func TestRefusesAWorldReadableKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	p, err := LoadOrCreate(dir)
	require.NoError(t, err)
	require.NoError(t, os.Chmod(p.PrivatePath, 0o644))
	_, err = Load(p.PrivatePath)
	require.ErrorContains(t, err, "chmod 600")
}
