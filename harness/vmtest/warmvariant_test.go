package vmtest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
)

// A variant whose file changes a unit the saved guest has already started (journald
// runs from the first second of a boot) cannot be made from the state: the warm start
// writes nothing, boots the variant's own image cold instead, and keeps the state,
// which is good for every other run.
func TestWarmVariantOfAStartedUnitBootsCold(t *testing.T) {
	files := map[string]images.File{"/etc/systemd/system/systemd-journald.service.d/zz-bootlab.conf": {Content: "[Service]\nEnvironment=BOOTLAB=1\n", Mode: 0o644}}
	base, _, _ := labtest.Fixture(t, images.FixtureSpec{})
	img, _, _ := labtest.Fixture(t, images.FixtureSpec{Files: files})
	states := func() []string {
		m, _ := filepath.Glob(filepath.Join(lab.WarmStateDir(labtest.Config().Cache), "*.state"))
		slices.Sort(m)
		return m
	}
	l := labtest.StartT(t, labtest.Image(img), labtest.Network(), labtest.Disks(labtest.Disk("disk0.img", 64)),
		labtest.Warm("this test is about a variant a warm start cannot make"), labtest.WarmVariant(base, files))
	var names []string
	for _, m := range l.Milestones() {
		names = append(names, m.Name)
	}
	require.NotContains(t, names, "variant_written", "nothing of the variant was written into the saved guest")
	require.NotContains(t, names, "released", "the run is a cold boot, not a restored guest")
	require.Equal(t, img.ISO, l.Metadata().Image.Path, "the cold boot is of the variant's own image")
	saved := states()
	require.NotEmpty(t, saved, "the base image's state was saved (or was there)")
	for _, s := range saved {
		_, err := os.Stat(s)
		require.NoError(t, err, "the state is kept: it was good, the variant was not")
	}
}
