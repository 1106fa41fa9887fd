// Package vmtest holds the harness's integration tests: real QEMU guests (the mini image,
// TCG unless KVM proves to work) driven through the same packages scenarios use.
package vmtest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/vm"
)

func TestMain(m *testing.M) { labtest.Main(m, labtest.MainOptions{Name: "vmtest"}) }

// mini builds (or reuses) a mini image; a build failure says what is missing.
func mini(t *testing.T, spec images.MiniSpec) *images.Mini {
	t.Helper()
	vmgate.VM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := labtest.Cache().BuildMini(ctx, spec)
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

// start boots a mini image for the test (labtest.StartT: stopped, recorded with the
// test's verdict and checked reaped when it ends; kept with -boot-image-debug if it
// failed). The login timeout is short: the mini image reaches its prompt in seconds.
func start(t *testing.T, slug string, image vm.Image, tweak func(*vm.Spec)) *lab.Lab {
	t.Helper()
	opts := []labtest.Option{labtest.Image(image), labtest.Memory(256), labtest.Slug(slug),
		labtest.Timeouts(func(to *vm.Timeouts) { to.Login = scaled(2 * time.Minute) })}
	if tweak != nil {
		opts = append(opts, labtest.Spec(tweak))
	}
	return labtest.StartT(t, opts...)
}

var scaled = labtest.Scaled

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
