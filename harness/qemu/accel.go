package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
)

// AccelChoice is the accelerator to use and why.
type AccelChoice struct {
	Accel  string    `json:"accel"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	Key    string    `json:"key"`
	Cached bool      `json:"-"`
}

// ProbeOptions configure ProbeAccel.
type ProbeOptions struct {
	Binary string
	// Kernel is booted without an initrd: under a working accelerator it runs to the
	// end of its init and panics for want of a root file system within a second or two,
	// which is the proof looked for. A kernel that hangs (as KVM guests do on some
	// hosts, this one included) shows nothing.
	Kernel  string
	Timeout time.Duration // default 20 s
	// CacheFile keeps the verdict for CacheFor (default 12 h), keyed by QEMU, host
	// kernel and probe kernel, so a test run does not pay for the probe every time.
	CacheFile string
	CacheFor  time.Duration
	Logger    *slog.Logger
	// KVMDevice is /dev/kvm unless a test says otherwise.
	KVMDevice string
}

var probeMu sync.Mutex

// ProbeAccel decides between KVM and TCG by trying KVM for real. A caller that was told
// which to use (--accel, BOOTLAB_ACCEL) does not probe: vm.Start takes Spec.Accel as is.
func ProbeAccel(ctx context.Context, o ProbeOptions) AccelChoice {
	now := time.Now()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.KVMDevice == "" {
		o.KVMDevice = "/dev/kvm"
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	if o.CacheFor <= 0 {
		o.CacheFor = 12 * time.Hour
	}
	f, err := os.OpenFile(o.KVMDevice, os.O_RDWR, 0)
	if err != nil {
		return AccelChoice{Accel: AccelTCG, Reason: fmt.Sprintf("cannot open %s (%v): using TCG", o.KVMDevice, err), At: now}
	}
	f.Close()
	if o.Kernel == "" {
		return AccelChoice{Accel: AccelTCG, Reason: "no probe kernel given: KVM untested, using TCG", At: now}
	}
	probeMu.Lock()
	defer probeMu.Unlock()
	key := probeKey(ctx, o)
	if c, ok := readProbeCache(o.CacheFile, key, o.CacheFor); ok {
		return c
	}
	c := probeKVM(ctx, o)
	c.At, c.Key = now, key
	o.Logger.Info("qemu.accel_probe", "accel", c.Accel, "reason", c.Reason)
	writeProbeCache(o.CacheFile, c)
	return c
}

func probeKey(ctx context.Context, o ProbeOptions) string {
	h := sha256.New()
	v, _ := Version(ctx, o.Binary)
	rel := kernelRelease()
	st, _ := os.Stat(o.Kernel)
	var size int64
	if st != nil {
		size = st.Size()
	}
	fmt.Fprintf(h, "%s\n%s\n%s\n%d\n", v, rel, o.Kernel, size)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// The cache file maps probe keys to verdicts, so probes with different kernels (the mini
// image's, the fixture's, an installer's) do not evict each other.
func readProbeCache(path, key string, maxAge time.Duration) (AccelChoice, bool) {
	c, ok := loadProbeCache(path)[key]
	if !ok || time.Since(c.At) > maxAge {
		return AccelChoice{}, false
	}
	c.Cached = true
	c.Reason += fmt.Sprintf(" (probe result cached %s ago)", time.Since(c.At).Round(time.Second))
	return c, true
}

func loadProbeCache(path string) map[string]AccelChoice {
	m := map[string]AccelChoice{}
	if path == "" {
		return m
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &m) // an old or torn file is just a cache miss
	}
	return m
}

func writeProbeCache(path string, c AccelChoice) {
	if path == "" {
		return
	}
	m := loadProbeCache(path)
	for k, v := range m {
		if time.Since(v.At) > 24*time.Hour {
			delete(m, k)
		}
	}
	m[c.Key] = c
	b, _ := json.Marshal(m)
	// A cache: failing to write it only costs a probe next time.
	if os.MkdirAll(filepath.Dir(path), 0o755) == nil {
		_ = atomicfile.Write(path, b, 0o644)
	}
}

// probeKVM boots the kernel under KVM with the serial line on a pipe and watches for the
// end of kernel init.
func probeKVM(ctx context.Context, o ProbeOptions) AccelChoice {
	bin, err := FindBinary(o.Binary)
	if err != nil {
		return AccelChoice{Accel: AccelTCG, Reason: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-accel", "kvm", "-m", "256", "-display", "none", "-no-reboot",
		"-monitor", "none", "-nic", "none", "-serial", "stdio", "-kernel", o.Kernel,
		"-append", "console=ttyS0 panic=-1 loglevel=4")
	cmd.SysProcAttr = groupAndDieWithParent()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	began := time.Now()
	err = cmd.Run()
	text := out.String()
	took := time.Since(began).Round(100 * time.Millisecond)
	for _, proof := range []string{"Kernel panic", "VFS: Unable to mount root", "Freeing unused kernel"} {
		if strings.Contains(text, proof) {
			return AccelChoice{Accel: AccelKVM, Reason: fmt.Sprintf("KVM test boot reached %q in %s", proof, took)}
		}
	}
	tail := strings.TrimSpace(text)
	if len(tail) > 300 {
		tail = "..." + tail[len(tail)-300:]
	}
	if ctx.Err() != nil {
		return AccelChoice{Accel: AccelTCG, Reason: fmt.Sprintf("KVM test boot showed no end of kernel init within %s (KVM guests hang on this host?); using TCG; probe output: %q", o.Timeout, tail)}
	}
	return AccelChoice{Accel: AccelTCG, Reason: fmt.Sprintf("KVM test boot failed (%v) after %s; using TCG; probe output: %q", err, took, tail)}
}
