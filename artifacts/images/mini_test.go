package images

import (
	"testing"
	"time"
)

func bootMini(t *testing.T, m *Mini) *testVM {
	t.Helper()
	return startVM(t, "-m", "256", "-kernel", m.Kernel, "-initrd", m.Initrd,
		"-append", "console=ttyS0 panic=-1 "+m.Append)
}

// TestMiniBootLoginSuPoweroff is the contract the harness relies on: login prompt,
// user password, su asking "Password:", a real root shell, and poweroff ending QEMU.
func TestMiniBootLoginSuPoweroff(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	m, err := BuildMini(ctx, MiniSpec{Version: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	vm := bootMini(t, m)
	vm.expect("bootlab mini image version test-1", 60*time.Second)
	vm.expect(MiniLoginPrompt, 60*time.Second)
	t.Logf("login prompt after %v", time.Since(start).Round(time.Millisecond))
	vm.send(MiniUser + "\n")
	vm.expect(MiniPasswordPrompt, 10*time.Second)
	vm.send(MiniUserPassword + "\n")
	vm.expect(MiniUserPrompt, 10*time.Second)
	vm.send("id -u; cat /etc/mini-version; uname -r\n")
	vm.expect("1000", 5*time.Second)
	vm.expect("test-1", 5*time.Second)
	vm.expect(m.KernelVersion, 5*time.Second)
	vm.expect(MiniUserPrompt, 5*time.Second)
	vm.send("su -\n")
	vm.expect(MiniPasswordPrompt, 10*time.Second)
	vm.send(MiniRootPassword + "\n")
	vm.expect(MiniRootPrompt, 10*time.Second)
	// $((...)) keeps the awaited text out of the echoed command line.
	vm.send("echo uid=$(id -u)=; test -c /dev/kmsg && echo kmsg=$((40+2)); echo host=$(hostname)=; test -d /sys/module/virtio_net && echo virtio=$((1+1))\n")
	vm.expect("uid=0=", 5*time.Second)
	vm.expect("kmsg=42", 5*time.Second)
	vm.expect("host=mini=", 5*time.Second)
	vm.expect("virtio=2", 5*time.Second)
	vm.expect(MiniRootPrompt, 5*time.Second)
	t.Logf("root shell after %v", time.Since(start).Round(time.Millisecond))
	vm.send("poweroff\n")
	vm.waitExit(30 * time.Second)
	if vm.err != nil {
		t.Errorf("qemu exit after guest poweroff: %v", vm.err)
	}
	if testing.Verbose() {
		t.Logf("serial transcript:\n%s", vm.out.String())
	}
}
