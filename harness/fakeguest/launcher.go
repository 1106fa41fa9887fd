package fakeguest

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/harness/qemu"
)

// Launcher is a qemu.Launcher that runs a simulated guest on the serial pty instead of
// QEMU, so a lab (run directory, metadata, login, debug pause, stop) is exercised in
// milliseconds by packages that cannot boot a VM in a unit test.
type Launcher struct{ Behaviour Behaviour }

type proc struct {
	serial *os.File
	guest  *Guest
	once   sync.Once
	done   chan struct{}
	killed chan struct{}
	signal syscall.Signal
}

// Pid is the test process's own: the pid is only ever reported, and no pidfile is
// written, so nothing will signal it.
func (p *proc) Pid() int { return os.Getpid() }

func (p *proc) Wait() error {
	// A signal "kills" the process at once, as for a real one, even if the simulated
	// guest is still blocked reading its line.
	select {
	case <-p.done:
	case <-p.killed:
	}
	if p.signal != 0 {
		return errors.New("signal: " + p.signal.String())
	}
	return nil
}

func (p *proc) Signal(sig syscall.Signal) error {
	p.once.Do(func() { p.signal = sig; p.serial.Close(); close(p.killed) })
	return nil
}

// Launch starts the simulated guest on serial.
func (f Launcher) Launch(ctx context.Context, binary string, args []string, serial *os.File, stderr io.Writer) (qemu.Process, error) {
	// The VM closes its copy of the pty slave once QEMU "has" it: keep our own.
	fd, err := unix.Dup(int(serial.Fd()))
	if err != nil {
		return nil, err
	}
	own := os.NewFile(uintptr(fd), "fake-serial")
	p := &proc{serial: own, done: make(chan struct{}), killed: make(chan struct{})}
	p.guest = Start(own, f.Behaviour, nil)
	go func() { <-p.guest.Done(); own.Close(); close(p.done) }()
	return p, nil
}
