package labtest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
)

// TestRunThenShard: -run with -shard shards the scenarios -run selects, so a filter to
// one scenario runs it in exactly one shard; without -run every scenario is dealt.
func TestRunThenShard(t *testing.T) {
	tests := []string{"TestA", "TestB", "TestCleanDisk", "TestD", "TestE"}
	got := map[string]bool{}
	for i := 1; i <= 4; i++ {
		p, err := filterThenShard(tests, "^TestCleanDisk$", i, 4)
		require.NoError(t, err)
		got[p] = true
		if i == 1 {
			require.Equal(t, "^(TestCleanDisk)$", p, "the one selected scenario is shard 1's")
		} else {
			require.Equal(t, "^$", p, "shard %d has nothing selected", i)
		}
	}
	p, err := filterThenShard(tests, "", 2, 4)
	require.NoError(t, err)
	require.Equal(t, "^(TestB)$", p)
	_, err = filterThenShard(tests, "(", 1, 4)
	require.ErrorContains(t, err, "-run")
}

// TestBreakUnitChangesOnlyTheStandardFixture: -break-unit adds its drop-in to the
// standard fixture and leaves the negative tests' own variants alone; a bad name and
// -iso are refused before anything boots.
func TestBreakUnitChangesOnlyTheStandardFixture(t *testing.T) {
	defer func(u, iso string) { *flagBreakUnit, *flagISO = u, iso }(*flagBreakUnit, *flagISO)
	*flagBreakUnit = ""
	require.Equal(t, images.FixtureSpec{}, withBrokenUnit(images.FixtureSpec{}), "no flag, no change")

	*flagBreakUnit = "pre-nixos.service"
	require.NoError(t, checkBreakUnit())
	s := withBrokenUnit(images.FixtureSpec{})
	require.Contains(t, s.Files, "/etc/systemd/system/pre-nixos.service.d/zz-bootlab-break.conf")
	require.Contains(t, s.Files["/etc/systemd/system/pre-nixos.service.d/zz-bootlab-break.conf"].Content, "ExecStart=/bin/false")
	neg := images.FixtureSpec{BreakUnit: "/bin/true"}
	require.Equal(t, neg, withBrokenUnit(neg), "a negative test's variant stays what it is")

	for _, bad := range []string{"pre-nixos", "../x.service", "a b.service"} {
		*flagBreakUnit = bad
		require.ErrorContains(t, checkBreakUnit(), "want a service unit's name", bad)
	}
	*flagBreakUnit, *flagISO = "ssh.service", "/some.iso"
	require.ErrorContains(t, checkBreakUnit(), "cannot change the -iso image")
}
