package shell_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/shell"
)

// uploadGuest plays the guest's side of a console upload: the commands UploadOnConsole
// types, acted on as busybox would (files in memory).
type uploadGuest struct {
	gunzip  bool
	corrupt bool // alter one byte of the first chunk, as a line noise would
	files   map[string][]byte
	cmds    []string
}

var (
	appendRe = regexp.MustCompile(`^printf %s '([A-Za-z0-9+/=]*)' >>(.+)$`)
	decodeRe = regexp.MustCompile(`^base64 -d ('[^']*')( \| gunzip)? >('[^']*') && rm -f '[^']*' && chmod 755 '[^']*' && sha256sum ('[^']*')$`)
)

func (g *uploadGuest) run(_ *fakeguest.Shell, cmd string) ([]byte, int) {
	g.cmds = append(g.cmds, cmd)
	if strings.HasPrefix(cmd, "command -v base64") {
		if g.gunzip {
			return []byte("gunzip\n"), 0
		}
		return nil, 1
	}
	if name, ok := strings.CutPrefix(cmd, ": >"); ok {
		g.files[name] = nil
		return nil, 0
	}
	if m := appendRe.FindStringSubmatch(cmd); m != nil {
		part := []byte(m[1])
		if g.corrupt {
			g.corrupt = false
			part[len(part)/2] ^= 1
		}
		g.files[m[2]] = append(g.files[m[2]], part...)
		return nil, 0
	}
	if m := decodeRe.FindStringSubmatch(cmd); m != nil {
		data, err := base64.StdEncoding.DecodeString(string(g.files[m[1]]))
		if err != nil {
			return []byte("base64: invalid input\n"), 1
		}
		if m[2] != "" {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err == nil {
				data, err = io.ReadAll(zr)
			}
			if err != nil {
				return []byte("gunzip: corrupted data\n"), 1
			}
		}
		g.files[m[3]] = data
		sum := sha256.Sum256(data)
		return []byte(hex.EncodeToString(sum[:]) + "  " + m[4] + "\n"), 0
	}
	return nil, -1
}

// With no frame channel, Upload types the file on the console (gzipped when the guest
// can gunzip it, in several commands when large) and the guest's sha256sum proves it.
func TestUploadFallsBackToTheConsole(t *testing.T) {
	for _, gz := range []bool{true, false} {
		t.Run(fmt.Sprintf("gunzip=%t", gz), func(t *testing.T) {
			g := &uploadGuest{gunzip: gz, files: map[string][]byte{}}
			r := start(t, fakeguest.Behaviour{Login: "root-shell", Commands: g.run})
			sh := login(t, r, shell.Profile{Name: "root"})
			require.Equal(t, shell.TransportConsole, sh.Transport())
			data := make([]byte, 100<<10)
			rand.New(rand.NewSource(1)).Read(data)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sum, err := sh.Upload(ctx, data, "/tmp/pre nixos")
			require.NoError(t, err)
			want := sha256.Sum256(data)
			require.Equal(t, hex.EncodeToString(want[:]), sum)
			require.True(t, bytes.Equal(data, g.files["'/tmp/pre nixos'"]), "the guest has the file byte for byte")
			appends := 0
			for _, c := range g.cmds {
				if appendRe.MatchString(c) {
					appends++
				}
			}
			require.Greater(t, appends, 1, "100 KiB of random data takes more than one chunk")
		})
	}
}

// A chunk altered on the way is caught by the digest (or the decoder), never accepted.
func TestUploadOnConsoleRefusesAlteredData(t *testing.T) {
	g := &uploadGuest{files: map[string][]byte{}, corrupt: true}
	r := start(t, fakeguest.Behaviour{Login: "root-shell", Commands: g.run})
	sh := login(t, r, shell.Profile{Name: "root"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := sh.UploadOnConsole(ctx, bytes.Repeat([]byte("pre-nixos "), 1000), "/tmp/pre-nixos")
	require.Error(t, err)
	require.Regexp(t, `sha256 in the guest|decoding exited`, err.Error())
}
