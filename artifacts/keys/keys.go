// Package keys keeps the SSH key pair whose public half is embedded in boot images as
// root's authorized key. The private half stays in the cache directory, mode 0600, and
// is never copied into run directories or logs; only its fingerprint is recorded.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Pair is a loaded key pair.
type Pair struct {
	PrivatePath string
	PublicPath  string
	// AuthorizedKey is the one-line public key, as in authorized_keys.
	AuthorizedKey string
	Fingerprint   string // SHA256:...
	Signer        ssh.Signer
}

// LoadOrCreate loads dir/id_ed25519, creating it (0600, directory 0700) when absent.
func LoadOrCreate(dir string) (*Pair, error) {
	priv := filepath.Join(dir, "id_ed25519")
	if _, err := os.Stat(priv); errors.Is(err, os.ErrNotExist) {
		if err := create(dir, priv); err != nil {
			return nil, err
		}
	}
	return Load(priv)
}

func create(dir, priv string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating key directory: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generating an ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(key, "bootlab image root key")
	if err != nil {
		return fmt.Errorf("encoding the private key: %w", err)
	}
	// Written to a private temporary file and linked into place: link(2) fails if the
	// name exists, so concurrent test processes agree on one key, none reads half a
	// key, and it is never readable by others, not even for a moment (CreateTemp: 0600).
	f, err := os.CreateTemp(dir, ".id_ed25519-*")
	if err != nil {
		return fmt.Errorf("writing the private key: %w", err)
	}
	defer os.Remove(f.Name())
	if err := pem.Encode(f, block); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(f.Name(), priv); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil // another process won the race; keep its key
		}
		return fmt.Errorf("installing the private key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(priv+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
}

// Load reads a private key and its public line.
func Load(priv string) (*Pair, error) {
	st, err := os.Stat(priv)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("private key %s is readable by others (mode %o): chmod 600 it", priv, st.Mode().Perm())
	}
	b, err := os.ReadFile(priv)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parsing private key %s: %w", priv, err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return &Pair{PrivatePath: priv, PublicPath: priv + ".pub", AuthorizedKey: line, Fingerprint: ssh.FingerprintSHA256(signer.PublicKey()), Signer: signer}, nil
}

// Fingerprint returns the SHA256 fingerprint of an authorized_keys line.
func Fingerprint(authorizedKey string) (string, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return "", fmt.Errorf("parsing public key: %w", err)
	}
	return ssh.FingerprintSHA256(k), nil
}
