package scenarios

import (
	"testing"

	"github.com/bootlab/bootlab/harness/labtest"
)

// standard is the standard machine, shared: the fixture booted once on one blank 4 GiB
// disk with a NIC, pre-nixos's checks run once. Scenarios 1 (clean disk), 2 (network +
// SSH), 3 (sshd independence) and 4 (embedded key) observe that one boot from different
// sides; none changes the VM, so one boot proves all four without weakening any.
func standard(t *testing.T) *labtest.Machine {
	return labtest.Boot(t, labtest.Standard(), labtest.SharedAs("standard"), labtest.Disks(labtest.Disk("disk0.img", 4096)), labtest.Network())
}
