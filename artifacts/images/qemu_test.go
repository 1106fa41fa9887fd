package images

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

// testVM is a deliberately simple serial driver (pipes on stdio, substring waits) so this
// package's tests do not depend on the harness they exist to serve.
type testVM struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	mark  int // expect() searches from here
	done  chan struct{}
	err   error
}

func needQEMU(t *testing.T) {
	t.Helper()
	vmgate.VM(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
	}
}

func startVM(t *testing.T, args ...string) *testVM {
	t.Helper()
	needQEMU(t)
	base := []string{"-accel", "tcg", "-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio", "-nodefaults", "-vga", "none"}
	cmd := exec.Command("qemu-system-x86_64", append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	vm := &testVM{t: t, cmd: cmd, done: make(chan struct{})}
	var err error
	if vm.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{vm: vm}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			vm.mu.Lock()
			vm.out.Write(buf[:n])
			vm.mu.Unlock()
			if err != nil {
				break
			}
		}
		vm.err = cmd.Wait()
		close(vm.done)
	}()
	t.Cleanup(func() {
		select {
		case <-vm.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-vm.done
		}
	})
	return vm
}

type lockedWriter struct{ vm *testVM }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.vm.mu.Lock()
	defer w.vm.mu.Unlock()
	return w.vm.out.Write(p)
}

// expect waits for s in the output after the last match and moves past it.
func (vm *testVM) expect(s string, timeout time.Duration) string {
	vm.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		vm.mu.Lock()
		all := vm.out.String()
		vm.mu.Unlock()
		if i := strings.Index(all[vm.mark:], s); i >= 0 {
			got := all[vm.mark : vm.mark+i+len(s)]
			vm.mark += i + len(s)
			return got
		}
		select {
		case <-vm.done:
			vm.t.Fatalf("qemu exited (%v) while waiting for %q; output tail:\n%s", vm.err, s, tail(all, 3000))
		default:
		}
		if time.Now().After(deadline) {
			vm.t.Fatalf("timed out after %v waiting for %q; output tail:\n%s", timeout, s, tail(all, 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (vm *testVM) send(s string) {
	vm.t.Helper()
	if _, err := io.WriteString(vm.stdin, s); err != nil {
		vm.t.Fatalf("writing to the serial console: %v", err)
	}
}

// waitExit waits for QEMU to exit by itself (guest poweroff with -no-reboot).
func (vm *testVM) waitExit(timeout time.Duration) {
	vm.t.Helper()
	select {
	case <-vm.done:
	case <-time.After(timeout):
		vm.mu.Lock()
		all := vm.out.String()
		vm.mu.Unlock()
		vm.t.Fatalf("qemu still running %v after poweroff; tail:\n%s", timeout, tail(all, 2000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	// Every caller builds an image or fetches Debian packages: a VM test.
	vmgate.VM(t)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
