package scenarios

import (
	"fmt"

	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
)

// suiteProfile is the image profile of -iso (the fixture's when the suite builds it).
func suiteProfile() shell.Profile {
	p, err := shell.ByName(*flagProfile)
	if err != nil {
		panic(err) // checkProfileFlag rejected it in TestMain already
	}
	return p
}

// checkProfileFlag rejects a -profile that is unknown or cannot describe the ISO the
// suite would boot: without -iso the suite builds the Debian fixture, which only the
// fixture profile describes.
func checkProfileFlag() error {
	p, err := shell.ByName(*flagProfile)
	if err != nil {
		return fmt.Errorf("-profile: %w", err)
	}
	if p.PreNixosUnit == "" {
		return fmt.Errorf("-profile %s: the scenarios need an image that runs pre-nixos (fixture or nixos)", p.Name)
	}
	if *flagISO == "" && p.Name != shell.Fixture.Name {
		return fmt.Errorf("-profile %s needs -iso PATH: without it the suite builds and boots the Debian fixture", p.Name)
	}
	return nil
}

// prof is the image profile of the VM a lab runs: every unit name, key path and
// expected state a scenario asserts comes from it, so one suite serves every image.
func prof(l *lab.Lab) shell.Profile { return l.Profile() }
