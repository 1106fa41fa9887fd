package sshc

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// server is an in-process SSH server on loopback that accepts one client key and runs
// `echo` style commands, so the client's pinning and exit statuses are tested for real.
func server(t *testing.T, hostSigner ssh.Signer, clientKey ssh.PublicKey) string {
	t.Helper()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) == string(clientKey.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
		PasswordCallback: func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) {
			return nil, errors.New("passwords are not accepted")
		},
	}
	cfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
				if err != nil {
					conn.Close()
					return
				}
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					ch, reqs, _ := nc.Accept()
					go func() {
						for r := range reqs {
							if r.Type == "exec" {
								r.Reply(true, nil)
								cmd := string(r.Payload[4:])
								fmt.Fprintf(ch, "ran %s\n", cmd)
								status := uint32(0)
								if cmd == "false" {
									status = 1
								}
								ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{status}))
								ch.Close()
							}
						}
					}()
				}
			}()
		}
	}()
	return l.Addr().String()
}

func signer(t *testing.T) ssh.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(k)
	require.NoError(t, err)
	return s
}

func TestPinnedHostKeyAndExitStatus(t *testing.T) {
	host, client := signer(t), signer(t)
	addr := server(t, host, client.PublicKey())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, "root", client, host.PublicKey())
	require.NoError(t, err)
	defer c.Close()
	out, status, err := c.Run(ctx, "id -un")
	require.NoError(t, err)
	require.Equal(t, 0, status)
	require.Equal(t, "ran id -un\n", string(out))
	_, status, err = c.Run(ctx, "false")
	require.NoError(t, err)
	require.Equal(t, 1, status)
}

func TestRefusesADifferentHostKey(t *testing.T) {
	host, other, client := signer(t), signer(t), signer(t)
	addr := server(t, host, client.PublicKey())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Dial(ctx, addr, "root", client, other.PublicKey())
	var m *HostKeyMismatch
	require.True(t, errors.As(err, &m), "got %v", err)
	require.Equal(t, ssh.FingerprintSHA256(host.PublicKey()), m.Got)
}

func TestRejectedKeyIsNotRetriedForever(t *testing.T) {
	host, client, stranger := signer(t), signer(t), signer(t)
	addr := server(t, host, client.PublicKey())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	_, err := Dial(ctx, addr, "root", stranger, host.PublicKey())
	require.ErrorContains(t, err, "refused the key")
	require.Less(t, time.Since(began), 5*time.Second)
}

func TestPasswordRefused(t *testing.T) {
	host, client := signer(t), signer(t)
	addr := server(t, host, client.PublicKey())
	refused, err := PasswordRefused(context.Background(), addr, "root", host.PublicKey())
	require.NoError(t, err)
	require.True(t, refused)
}

func TestRetriesUntilSSHDListens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close() // nothing listens yet: Dial keeps trying until the deadline
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err = Dial(ctx, addr, "root", signer(t), signer(t).PublicKey())
	require.ErrorContains(t, err, "gave up after")
}
