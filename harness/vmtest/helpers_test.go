// Package vmtest holds the harness's integration tests: real QEMU guests (the mini image,
// TCG unless KVM proves to work) driven through the same packages scenarios use.
package vmtest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

func TestMain(m *testing.M) {
	lab.HandleSignals()
	os.Exit(m.Run())
}

// mini builds (or reuses) a mini image; a build failure says what is missing.
func mini(t *testing.T, spec images.MiniSpec) *images.Mini {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := images.BuildMini(ctx, spec)
	require.NoError(t, err, "building the mini image")
	return img
}

// miniImage describes a built mini image for the VM.
func miniImage(img *images.Mini, prof shell.Profile) vm.Image {
	return vm.Image{
		Name: "mini-" + img.Version, Kernel: img.Kernel, Initrd: img.Initrd,
		Append:  "console=ttyS0,115200 panic=-1 " + img.Append,
		Profile: prof, Poweroff: "poweroff",
	}
}

// start boots a mini image in a lab tied to the test: the VM is stopped and the run
// recorded when the test ends, with the test's verdict.
func start(t *testing.T, slug string, image vm.Image, tweak func(*vm.Spec)) *lab.Lab {
	t.Helper()
	spec := vm.Spec{Image: image, MemoryMB: 256, ProbeKernel: image.Kernel, ProbeCache: filepath.Join(images.CacheDir(), "accel-probe.json")}
	spec.Timeouts = vm.DefaultTimeouts()
	spec.Timeouts.Login = scaled(2 * time.Minute)
	// busybox init ignores the ACPI power button: without a root shell, go straight to
	// QMP quit instead of waiting out a powerdown that cannot work.
	spec.Timeouts.Stop.Powerdown = 0
	if tweak != nil {
		tweak(&spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	l, err := lab.Start(ctx, lab.Config{Slug: slug, Notes: lab.NotesRootForTests(), VM: spec})
	if err != nil {
		if l != nil {
			t.Logf("run directory: %s", l.Dir())
		}
		require.NoError(t, err, "starting the VM")
	}
	t.Logf("run directory: %s", l.Dir())
	t.Cleanup(func() {
		var verdict error
		if t.Failed() {
			verdict = errFailed
		}
		ctx, cancel := context.WithTimeout(context.Background(), scaled(2*time.Minute))
		defer cancel()
		if err := l.Close(ctx, verdict); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
		requireReaped(t, l)
	})
	return l
}

type failedErr struct{}

func (failedErr) Error() string { return "test failed" }

var errFailed = failedErr{}

func scaled(d time.Duration) time.Duration { return time.Duration(float64(d) * vm.ScaleFromEnv()) }

// requireReaped checks by pid (from the run directory's pidfile) that QEMU is gone.
func requireReaped(t *testing.T, l *lab.Lab) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.Dir(), vm.PIDFile))
	if err != nil {
		return // QEMU never started
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	err = syscall.Kill(pid, 0)
	require.ErrorIs(t, err, syscall.ESRCH, "QEMU pid %d from %s is still running", pid, vm.PIDFile)
}

// metadata reads and validates metadata.json.
func metadata(t *testing.T, dir string) runrec.Metadata {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, runrec.MetadataFile))
	require.NoError(t, err)
	require.True(t, json.Valid(b), "metadata.json is valid JSON")
	m, err := runrec.ReadMetadata(dir)
	require.NoError(t, err)
	return m
}
