package labtest

import (
	"flag"
	"fmt"
	"regexp"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/ci"
)

// -break-unit breaks one unit of the standard fixture on purpose, so a test of how a
// failure is reported (the nightly red-night run, `make ci-nights`) gets a real one:
// the image gets a drop-in that makes the unit's ExecStart /bin/false. It lives in the
// fixture's small layer, so the broken variant costs seconds, not a new squashfs.
var flagBreakUnit = flag.String("break-unit", "", "break this service of the standard fixture on purpose (a drop-in: ExecStart=/bin/false), to test how a failure is reported")

var unitName = regexp.MustCompile(`^[A-Za-z0-9:_.@-]+\.service$`)

func checkBreakUnit() error {
	switch {
	case *flagBreakUnit == "":
		return nil
	case !unitName.MatchString(*flagBreakUnit):
		return fmt.Errorf("-break-unit %q: want a service unit's name, like pre-nixos.service", *flagBreakUnit)
	case *flagISO != "":
		return fmt.Errorf("-break-unit changes the fixture built from Debian packages; it cannot change the -iso image")
	}
	return nil
}

// withBrokenUnit is spec with -break-unit's drop-in when spec is the standard fixture
// (the variants of negative tests are left as they are).
func withBrokenUnit(spec images.FixtureSpec) images.FixtureSpec {
	if *flagBreakUnit == "" || spec.BreakUnit != "" || spec.RootKey != "" || spec.RootKeyFile != "" || len(spec.Files) > 0 {
		return spec
	}
	spec.Files = map[string]images.File{
		"/etc/systemd/system/" + *flagBreakUnit + ".d/zz-bootlab-break.conf": {
			Content: "# broken on purpose: go test -break-unit\n[Service]\nExecStart=\nExecStart=/bin/false\n", Mode: 0o644},
	}
	return spec
}

// filterThenShard is the -test.run of shard i of n when -run was given too: the shard
// is taken among the scenarios -run selects (top-level names), so
// `-run '^TestCleanDisk$' -shard 1/4` runs that scenario in shard 1 and nothing in the
// others, and every selected scenario still runs in exactly one shard.
func filterThenShard(tests []string, run string, i, n int) (string, error) {
	if run != "" {
		re, err := regexp.Compile(run)
		if err != nil {
			return "", fmt.Errorf("-run %q: %w", run, err)
		}
		var kept []string
		for _, t := range tests {
			if re.MatchString(t) {
				kept = append(kept, t)
			}
		}
		tests = kept
	}
	return ci.RunPattern(ci.Shard(tests, i, n)), nil
}
