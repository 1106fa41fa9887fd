package scenarios

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/labtest"
)

// Scenario 10: the mini image booted with each Debian kernel build reaches a verified
// root shell and reports its uname -r. Each kernel is a subtest of its own, so the
// series boots side by side. With -kernel only that kernel is booted.
func TestUpstreamKernelSeries(t *testing.T) {
	t.Parallel()
	series := []labtest.Kernel{labtest.KernelImage(*flagKernel, *flagInitrd, *flagAppend)}
	if *flagKernel == "" {
		series = labtest.KernelSeries(t)
	}
	for _, k := range series {
		name := "kernel-" + k.Release
		if k.Release == "" {
			name = "kernel"
		}
		t.Run(name, func(t *testing.T) {
			m := labtest.Boot(t, labtest.Image(k.Image), labtest.Memory(256), labtest.Slug(name))
			release := strings.TrimSpace(m.Succeed("uname -r"))
			t.Logf("%s: uname -r = %s", name, release)
			if k.Release != "" {
				require.Equal(t, k.Release, release)
			}
			m.Shutdown()
		})
	}
}
