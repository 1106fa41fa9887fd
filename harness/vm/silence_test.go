package vm

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/console"
)

func guardedVM(t *testing.T, img Image) (*VM, net.Conn) {
	t.Helper()
	host, guest := net.Pipe()
	t.Cleanup(func() { host.Close(); guest.Close() })
	return &VM{spec: Spec{Image: img, Timeouts: Timeouts{NoSerial: 200 * time.Millisecond}},
		console: console.New(host, console.Options{}), log: slog.New(slog.DiscardHandler), spawned: time.Now()}, guest
}

// A firmware boot of an ISO that says nothing on the serial line ends the wait early,
// with an error that says so and what to try; one that talks, or a direct boot, does not.
func TestGuardSilence(t *testing.T) {
	v, _ := guardedVM(t, Image{ISO: "upstream.iso"})
	ctx, wrap, cancel := v.GuardSilence(context.Background())
	defer cancel()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the guard did not end the wait of a silent firmware boot")
	}
	err := wrap(errors.New("waiting for the login prompt: context canceled"))
	require.ErrorIs(t, err, ErrNoSerialOutput)
	require.ErrorContains(t, err, "--boot direct")
	require.ErrorContains(t, err, "--entry")
	require.ErrorContains(t, err, "waiting for the login prompt", "the original error is kept")

	talking, guest := guardedVM(t, Image{ISO: "fixture.iso"})
	go guest.Write([]byte("ISOLINUX 6.04\r\n"))
	ctx, wrap, cancel = talking.GuardSilence(context.Background())
	defer cancel()
	select {
	case <-ctx.Done():
		t.Fatal("a boot with serial output was cut short")
	case <-time.After(time.Second):
	}
	require.NoError(t, wrap(nil))

	direct, _ := guardedVM(t, Image{ISO: "upstream.iso", Kernel: "vmlinuz"})
	ctx, wrap, cancel = direct.GuardSilence(context.Background())
	defer cancel()
	select {
	case <-ctx.Done():
		t.Fatal("a direct boot is not a firmware boot")
	case <-time.After(time.Second):
	}
	other := errors.New("login timeout")
	require.Equal(t, other, wrap(other))
}
