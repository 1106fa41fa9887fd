// Package sshc logs in to a guest over SSH with the image's embedded key, trusting only
// the host key the guest showed on its console (pinned), never any key it offers.
package sshc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Client is a connected SSH session factory.
type Client struct {
	c *ssh.Client
}

// ParseHostKey parses a host public key as printed by `cat /etc/ssh/ssh_host_*_key.pub`.
func ParseHostKey(line string) (ssh.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(line)))
	if err != nil {
		return nil, fmt.Errorf("parsing the guest host key %q: %w", line, err)
	}
	return k, nil
}

// HostKeyMismatch is a server that presented a key other than the pinned one.
type HostKeyMismatch struct {
	Want, Got string
}

func (e *HostKeyMismatch) Error() string {
	return fmt.Sprintf("host key mismatch: the guest's console showed %s but the server presented %s (refusing to connect)", e.Want, e.Got)
}

// Dial connects to addr (127.0.0.1:port) as user with signer, accepting only hostKey.
// It retries until ctx ends, because a guest's sshd may still be generating host keys
// or not yet started; authentication and host-key failures are not retried.
func Dial(ctx context.Context, addr, user string, signer ssh.Signer, hostKey ssh.PublicKey) (*Client, error) {
	var mismatch *HostKeyMismatch
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, got ssh.PublicKey) error {
			if !bytes.Equal(got.Marshal(), hostKey.Marshal()) {
				mismatch = &HostKeyMismatch{Want: ssh.FingerprintSHA256(hostKey), Got: ssh.FingerprintSHA256(got)}
				return mismatch
			}
			return nil
		},
		HostKeyAlgorithms: []string{hostKey.Type()},
		Timeout:           10 * time.Second,
	}
	var last error
	for attempt := 1; ; attempt++ {
		c, err := dialOnce(ctx, addr, cfg)
		if err == nil {
			return &Client{c: c}, nil
		}
		last = err
		if mismatch != nil {
			return nil, mismatch
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("ssh %s@%s: the guest refused the key: %w", user, addr, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ssh %s@%s: gave up after %d attempts: %w", user, addr, attempt, last)
		case <-time.After(time.Second):
		}
	}
}

func dialOnce(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

// Run runs a command and returns its combined output and exit status.
func (c *Client) Run(ctx context.Context, cmd string) ([]byte, int, error) {
	s, err := c.c.NewSession()
	if err != nil {
		return nil, -1, fmt.Errorf("opening an SSH session: %w", err)
	}
	defer s.Close()
	out := &syncBuffer{}
	s.Stdout = out
	s.Stderr = out
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return out.Bytes(), ee.ExitStatus(), nil
		}
		if err != nil {
			return out.Bytes(), -1, fmt.Errorf("running %q over SSH: %w", cmd, err)
		}
		return out.Bytes(), 0, nil
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGKILL)
		return out.Bytes(), -1, fmt.Errorf("running %q over SSH: %w", cmd, ctx.Err())
	}
}

// syncBuffer serialises the session's concurrent stdout and stderr copiers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

// Close ends the connection.
func (c *Client) Close() error { return c.c.Close() }

// PasswordRefused reports whether the server at addr rejects a password login for user
// (it must, on a hardened image). It does not check the host key: it proves a negative
// and sends a throwaway password.
func PasswordRefused(ctx context.Context, addr, user string, hostKey ssh.PublicKey) (bool, error) {
	cfg := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.Password("bootlab-not-the-password")},
		HostKeyCallback:   ssh.FixedHostKey(hostKey),
		HostKeyAlgorithms: []string{hostKey.Type()}, // else the server may offer another key type
		Timeout:           10 * time.Second,
	}
	c, err := dialOnce(ctx, addr, cfg)
	if err == nil {
		c.Close()
		return false, nil
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return true, nil
	}
	return false, fmt.Errorf("ssh password probe: %w", err)
}
