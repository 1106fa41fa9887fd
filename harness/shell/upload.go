package shell

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/bootlab/bootlab/harness/frame"
)

// Upload copies data into the guest at path (mode 0755) and proves it arrived whole:
// the guest's sha256sum of the file must equal the host's. It returns the digest. The
// bytes go over the frame channel when it is in use, and are typed on the console
// (UploadOnConsole) when it is not, so a baseline without virtio_console still gets
// them, only slower.
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
		s.log.Info("shell.upload_on_console", "path", path, "why", s.ChannelStatus())
		return s.UploadOnConsole(ctx, data, path)
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

// consoleChunk is how much base64 one typed command appends: TypedLines cuts it into
// lines the shell takes, and every command is a round trip, so chunks are large.
const consoleChunk = 48 << 10

// UploadOnConsole is Upload over the console, whatever the channel: the data (gzipped
// when the guest has gunzip) is typed as base64 in printf commands appending to
// PATH.b64, decoded in the guest, and its sha256sum checked as on the channel. Only
// printable ASCII is typed, so nothing the line discipline or the shell's line editor
// interprets can alter it; a chunk that did arrive altered fails the digest.
func (s *Shell) UploadOnConsole(ctx context.Context, data []byte, path string) (string, error) {
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	q, b64 := frame.Quote(path), frame.Quote(path+".b64")
	r, err := s.Run(ctx, "command -v base64 >/dev/null || echo no-base64; command -v gunzip >/dev/null && echo gunzip", OnConsole(), AllowFail())
	if err != nil {
		return "", fmt.Errorf("uploading %s on the console: looking for base64 and gunzip: %w", path, err)
	}
	if strings.Contains(string(r.Output), "no-base64") {
		return "", fmt.Errorf("uploading %s on the console: the guest has no base64 to decode it", path)
	}
	payload, decode := data, "base64 -d "+b64
	if strings.Contains(string(r.Output), "gunzip") {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if _, err := zw.Write(data); err != nil {
			return "", fmt.Errorf("uploading %s: compressing: %w", path, err)
		}
		if err := zw.Close(); err != nil {
			return "", fmt.Errorf("uploading %s: compressing: %w", path, err)
		}
		payload, decode = buf.Bytes(), decode+" | gunzip"
	}
	enc := base64.StdEncoding.EncodeToString(payload)
	if _, err := s.Run(ctx, ": >"+b64, OnConsole()); err != nil {
		return "", fmt.Errorf("uploading %s on the console: %w", path, err)
	}
	for off := 0; off < len(enc); off += consoleChunk {
		part := enc[off:min(off+consoleChunk, len(enc))]
		if _, err := s.Run(ctx, "printf %s '"+part+"' >>"+b64, OnConsole()); err != nil {
			// The error quotes the command: without the chunk, it says what went wrong.
			msg := strings.ReplaceAll(err.Error(), part, fmt.Sprintf("<%d base64 bytes>", len(part)))
			return "", fmt.Errorf("uploading %s on the console (%d of %d base64 bytes sent): %s", path, off, len(enc), msg)
		}
	}
	r, err = s.Run(ctx, decode+" >"+q+" && rm -f "+b64+" && chmod 755 "+q+" && sha256sum "+q, OnConsole(), AllowFail())
	if err != nil {
		return "", fmt.Errorf("uploading %s on the console: decoding: %w", path, err)
	}
	if r.ExitStatus != 0 {
		return "", fmt.Errorf("uploading %s on the console: decoding exited %d: %s", path, r.ExitStatus, strings.TrimSpace(string(r.Output)))
	}
	if err := checkDigest(r.Output, want); err != nil {
		return "", fmt.Errorf("uploading %s on the console: %w", path, err)
	}
	s.log.Info("shell.upload", "path", path, "bytes", len(data), "sha256", want, "transport", TransportConsole, "typed", len(enc))
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
