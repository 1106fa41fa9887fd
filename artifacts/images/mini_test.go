package images

import (
	"strings"
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
	m, err := testCache().BuildMini(ctx, MiniSpec{Version: "test-1"})
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

// TestMiniKernelSeriesAutoLogin boots the oldest and newest Debian kernel builds apt
// serves (6.1 ships plain .ko, 6.12 xz-compressed ones and a different built-in set),
// with auto-login, and checks uname -r and that the virtio modules loaded.
func TestMiniKernelSeriesAutoLogin(t *testing.T) {
	ctx := testCtx(t, 15*time.Minute)
	series, err := KernelSeries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) < 3 {
		t.Fatalf("need at least 3 kernel builds, apt has %v", series)
	}
	for _, pkg := range []string{series[0], series[len(series)-1]} {
		t.Run(pkg, func(t *testing.T) {
			m, err := testCache().BuildMini(ctx, MiniSpec{KernelPackage: pkg, AutoLogin: true, Version: "series"})
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimPrefix(pkg, "linux-image-"); m.KernelVersion != want {
				t.Errorf("KernelVersion %q, want %q", m.KernelVersion, want)
			}
			vm := bootMini(t, m)
			vm.expect(MiniUserPrompt, 90*time.Second)
			vm.send("echo R=$(uname -r)=; test -d /sys/module/virtio_blk && echo B=$((1+1))\n")
			vm.expect("R="+m.KernelVersion+"=", 10*time.Second)
			vm.expect("B=2", 10*time.Second)
			vm.send("poweroff -f\n") // as the user: must be refused, the VM keeps running
			vm.expect(MiniUserPrompt, 10*time.Second)
			vm.send("su -c poweroff\n")
			vm.expect(MiniPasswordPrompt, 10*time.Second)
			vm.send(MiniRootPassword + "\n")
			vm.waitExit(30 * time.Second)
		})
	}
}

// TestMiniCustomInit checks the Init override and the rc.mini contract it relies on.
func TestMiniCustomInit(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	m, err := testCache().BuildMini(ctx, MiniSpec{Init: "#!/bin/sh\n. /etc/rc.mini\necho CUSTOM-INIT-$(hostname)-$((6*7))\nexec poweroff -f\n"})
	if err != nil {
		t.Fatal(err)
	}
	vm := bootMini(t, m)
	vm.expect("CUSTOM-INIT-mini-42", 90*time.Second)
	vm.waitExit(30 * time.Second)
}
