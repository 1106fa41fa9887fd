package shell

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/bootlab/bootlab/harness/frame"
)

// Upload copies data into the guest at path (mode 0755) over the frame channel and
// proves it arrived whole: the guest's sha256sum of the file must equal the host's. It
// returns the digest.
//
// The virtio-serial port has a single opener and the root shell holds it write-only for
// framed output, so the shell closes it, a reader (`head -c SIZE`) takes the port while
// the host writes the bytes into its end, and the shell opens it afresh; the commands in
// between travel framed on the console. QEMU stops reading the host end while no guest
// program has the port open, so bytes written early wait instead of being lost.
func (s *Shell) Upload(ctx context.Context, data []byte, path string) (string, error) {
	s.mu.Lock()
	ch := s.ch
	s.mu.Unlock()
	if ch == nil {
		return "", fmt.Errorf("uploading %s: the frame channel is not in use (%s)", path, s.ChannelStatus())
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	if _, err := s.Run(ctx, "exec 7>&- 6<&-", OnConsole()); err != nil {
		return "", fmt.Errorf("uploading %s: closing the shell's end of the frame port: %w", path, err)
	}
	s.setChannel(nil, "closed for an upload")
	defer func() {
		if err := s.connectChannel(ctx); err != nil {
			s.log.Warn("shell.upload_reconnect_failed", "error", err.Error())
		}
	}()
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- ch.Send(sendCtx, string(data)) }()
	q := frame.Quote(path)
	// The port's device is found as __blc finds it, by its name in sysfs.
	cmd := fmt.Sprintf(`__d=; for __p in /sys/class/virtio-ports/*; do read -r __n <"$__p/name" 2>/dev/null; [ "$__n" = %s ] && __d=/dev/${__p##*/}; done; [ -n "$__d" ] || { echo "no %s port"; exit 2; }; head -c %d <"$__d" >%s && chmod 755 %s && sha256sum %s`,
		frame.ChannelName, frame.ChannelName, len(data), q, q, q)
	r, err := s.Run(ctx, cmd, OnConsole(), AllowFail())
	if err != nil {
		return "", fmt.Errorf("uploading %s (%d bytes): %w", path, len(data), err)
	}
	if r.ExitStatus != 0 {
		return "", fmt.Errorf("uploading %s (%d bytes): the guest's reader exited %d: %s", path, len(data), r.ExitStatus, strings.TrimSpace(string(r.Output)))
	}
	if err := <-sent; err != nil {
		return "", fmt.Errorf("uploading %s: writing to the frame channel: %w", path, err)
	}
	if err := checkDigest(r.Output, want); err != nil {
		return "", fmt.Errorf("uploading %s: %w", path, err)
	}
	s.log.Info("shell.upload", "path", path, "bytes", len(data), "sha256", want)
	return want, nil
}

// checkDigest compares sha256sum's output in the guest with the host's digest: a file
// cut short or altered on the way is refused, never run.
func checkDigest(sha256sumOutput []byte, want string) error {
	got, _, _ := strings.Cut(strings.TrimSpace(string(sha256sumOutput)), " ")
	if got != want {
		return fmt.Errorf("sha256 in the guest is %q, on the host %s", got, want)
	}
	return nil
}
