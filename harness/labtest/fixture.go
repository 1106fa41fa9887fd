package labtest

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/artifacts/keys"
	bootcfg "github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"github.com/bootlab/bootlab/harness/shell"
)

// The flags every VM StartT boots takes by default (bootlab run's own options), and the
// ones that say which fixture image Fixture gives.
var (
	flagAccel    = flag.String("accel", "", "kvm or tcg (default: probe)")
	flagKeep     = flag.Bool("keep", false, "keep the disk images the runs create (deleted when each run closes otherwise)")
	flagNotes    = flag.String("notes", "", "run directories go here (default $BOOTLAB_NOTES or a temp dir)")
	flagCaptures = flag.String("captures", "always", "take boot evidence always, on failure, or none")
	flagISO      = flag.String("iso", "", "fixture scenarios boot this ISO instead of the one built from Debian packages")
	flagProfile  = flag.String("profile", "fixture", "image profile of the -iso image: fixture or nixos (unit names, key paths, login, poweroff)")
	flagEntry    = flag.String("entry", "", "boot this entry of the ISO's boot menu (label, title or regexp; default: the menu's default)")
	flagBoot     = flag.String("boot", lab.BootAuto, "how the ISO boots: direct, firmware or auto")
)

// NotesRoot is where run directories go: -notes, else Config().Notes.
func NotesRoot() string { return Config().Notes }

// Cache is the image cache of Config().
func Cache() images.Cache { return images.Cache(Config().Cache) }

var (
	envOnce sync.Once
	envConf bootcfg.Config
	envErr  error
)

// fromEnv reads BOOTLAB_* once per test binary: this package is the test binaries'
// edge, as bootlab's main is the command's. A test binary's notes default to
// $TMPDIR/bootlab-notes (config.TestNotes), out of the source tree.
func fromEnv() (bootcfg.Config, error) {
	envOnce.Do(func() {
		base := bootcfg.Defaults()
		base.Notes = bootcfg.TestNotes()
		envConf, envErr = bootcfg.OverEnv(base)
	})
	return envConf, envErr
}

// Config is the test binary's configuration: harness/config's (BOOTLAB_*, read once,
// its one set of defaults) with this package's flags laid over it, as bootlab's flags
// are; built here and passed down, never by setting the environment. Main refuses a
// malformed BOOTLAB_* before any test runs.
func Config() bootcfg.Config {
	c, _ := fromEnv()
	if *flagNotes != "" {
		c.Notes = *flagNotes
	}
	if *flagAccel != "" {
		c.Accel = *flagAccel
	}
	if *flagScale > 0 {
		c.TimeoutScale = *flagScale
	}
	return c
}

// checkFixtureFlags rejects a -profile that is unknown or cannot describe the ISO the
// suite would boot: without -iso the Debian fixture is built, which only the fixture
// profile describes; and a -captures that is no mode.
func checkFixtureFlags() error {
	if _, err := lab.ParseCaptureMode(*flagCaptures); err != nil {
		return fmt.Errorf("-captures: %w", err)
	}
	p, err := shell.ByName(*flagProfile)
	if err != nil {
		return fmt.Errorf("-profile: %w", err)
	}
	if err := checkBreakUnit(); err != nil {
		return err
	}
	if p.PreNixosUnit == "" {
		return fmt.Errorf("-profile %s: the fixture scenarios need an image that runs pre-nixos (fixture or nixos)", p.Name)
	}
	if *flagISO == "" && p.Name != shell.Fixture.Name {
		return fmt.Errorf("-profile %s needs -iso PATH: without it the suite builds and boots the Debian fixture", p.Name)
	}
	return nil
}

// FixtureProfile is the image profile of the fixture VMs: -profile with -iso, the
// Debian fixture's otherwise.
func FixtureProfile() shell.Profile {
	p, err := shell.ByName(*flagProfile)
	if err != nil {
		return shell.Fixture // CheckFlags rejected it in TestMain already
	}
	return p
}

type builtFixture struct {
	img lab.Image
	iso *images.ISO
	key *keys.Pair
	err error
}

var (
	fixtureMu    sync.Mutex
	fixtureCache = map[string]*builtFixture{}
	miniOnce     sync.Once
	miniKernel   string
	miniErr      error
)

// Fixture builds (once per process and variant) the fixture ISO with bootlab's root key
// and says how it boots (-boot, -entry). With -iso the given ISO stands in for the
// standard variant, with -profile's image profile.
func Fixture(t testing.TB, spec images.FixtureSpec) (lab.Image, *images.ISO, *keys.Pair) {
	t.Helper()
	vmgate.Gate(t)
	spec = withBrokenUnit(spec)
	id := fmt.Sprintf("%+v", spec)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	b, ok := fixtureCache[id]
	if !ok {
		b = &builtFixture{}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		if *flagISO != "" && spec.BreakUnit == "" && spec.RootKey == "" {
			b.key, b.err = Cache().RootKey()
			b.img = lab.Image{Name: "iso", ISO: *flagISO, Profile: FixtureProfile()}
			b.iso = &images.ISO{Path: *flagISO}
		} else {
			b.img, b.iso, b.key, b.err = lab.FixtureImage(ctx, Cache(), spec)
		}
		if b.err == nil {
			// -boot/-entry (default auto): FixtureImage supplies the ISO's own kernel,
			// so the fixture boots directly (faster under TCG, docs/benchmarks.md);
			// -boot firmware boots its CD through ISOLINUX.
			_, b.err = lab.ResolveISOBoot(ctx, Cache(), &b.img, *flagBoot, *flagEntry)
		}
		fixtureCache[id] = b
	}
	require.NoError(t, b.err, "building the fixture ISO (needs mmdebstrap, squashfs-tools, xorriso, isolinux: make deps)")
	return b.img, b.iso, b.key
}

// probeKernel is a kernel for the KVM probe of an image that has none to hand (an ISO
// booted through the firmware): the mini image's, built in seconds and cached.
func probeKernel() (string, error) {
	miniOnce.Do(func() {
		m, err := Cache().BuildMini(context.Background(), images.MiniSpec{})
		if err != nil {
			miniErr = fmt.Errorf("building the mini image for the accelerator probe: %w", err)
			return
		}
		miniKernel = m.Kernel
	})
	return miniKernel, miniErr
}

// EmbeddedKey is the root key bootlab inspect finds on the ISO at path (what the image
// will let in), failing t when there is none.
func EmbeddedKey(t testing.TB, path string) *isoinspect.Key {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, err := isoinspect.RootKey(ctx, path)
	require.NoError(t, err, "bootlab inspect's key lookup on %s", path)
	require.NotNil(t, key, "bootlab inspect finds an embedded root key on %s", path)
	return key
}
