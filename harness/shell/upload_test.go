package shell

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUploadDigestIsChecked(t *testing.T) {
	data := []byte("#!/bin/sh\\necho pre-nixos\\n")
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	require.NoError(t, checkDigest([]byte(want+"  /tmp/pre-nixos\\n"), want))
	short := sha256.Sum256(data[:len(data)-1])
	err := checkDigest([]byte(hex.EncodeToString(short[:])+"  /tmp/pre-nixos\\n"), want)
	require.ErrorContains(t, err, "sha256 in the guest", "a file cut short on the way is refused")
	require.Error(t, checkDigest(nil, want), "no sha256sum output is no proof")
}
