package lab

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/bootlab/bootlab/artifacts/bootmenu"
	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/harness/vm"
)

// Boot paths for an ISO.
const (
	BootAuto     = "auto"
	BootDirect   = "direct"
	BootFirmware = "firmware"
)

// ErrBootChoice is wrapped by errors in the caller's choice of boot path or entry
// (an unknown --boot, an --entry that matches nothing): usage errors, not verdicts.
var ErrBootChoice = errors.New("boot choice")

// ISOBoot is how an ISO is going to be booted.
type ISOBoot struct {
	// Path is BootDirect or BootFirmware (auto resolved).
	Path string
	// Entry is the menu entry chosen (zero when the ISO has no readable menu and the
	// firmware boots it).
	Entry bootmenu.Entry
	// Why says how auto decided, for the person reading the progress lines.
	Why string
}

// directCacheDir is where entries' kernels and initrds extracted from ISOs are kept.
func directCacheDir(cache images.Cache) string { return filepath.Join(cache.Dir(), "direct") }

// ResolveISOBoot reads the ISO's boot menu, picks the entry (entry: a label, a title or
// a regular expression; empty: the default) and the boot path, and fills img (whose ISO
// is set) accordingly: for a direct boot, the entry's kernel and initrd extracted into
// the image cache and its command line with the serial console last.
//
// auto boots through the firmware when the chosen entry is the one the bootloader
// boots by itself and already has a serial console, and directly otherwise (the
// firmware path cannot choose another entry: nobody presses keys in the menu).
func ResolveISOBoot(ctx context.Context, cache images.Cache, img *vm.Image, boot, entry string) (ISOBoot, error) {
	switch boot {
	case "", BootAuto, BootDirect, BootFirmware:
	default:
		return ISOBoot{}, fmt.Errorf("%w: --boot must be direct, firmware or auto, not %q", ErrBootChoice, boot)
	}
	if boot == "" {
		boot = BootAuto
	}
	if boot == BootFirmware {
		// A kernel the image builder supplied would make QEMU boot it directly.
		img.Kernel, img.Initrd, img.Append = "", "", ""
	}
	if boot == BootAuto && entry == "" && img.Kernel != "" {
		// The image builder gave the ISO's own kernel (FixtureImage): boot it directly.
		return ISOBoot{Path: BootDirect, Entry: bootmenu.Entry{Label: img.Entry}, Why: "the image builder supplied the ISO's kernel and initrd (faster than the firmware under TCG)"}, nil
	}
	if boot == BootFirmware && entry != "" {
		return ISOBoot{}, fmt.Errorf("%w: --entry needs --boot direct or auto: through the firmware the bootloader boots its own default", ErrBootChoice)
	}
	menus, err := bootmenu.ReadISO(ctx, img.ISO)
	if err != nil {
		// A hostile image (sizes past its end, loops) is refused here, before any run
		// directory: the firmware would boot what the reader would not read. So is a
		// file that is no ISO9660 image at all: no firmware boots it as a CD.
		if boot == BootAuto && entry == "" && !errors.Is(err, isoinspect.ErrHostile) && !errors.Is(err, isoinspect.ErrNotISO) && ctx.Err() == nil {
			return ISOBoot{Path: BootFirmware, Why: fmt.Sprintf("the boot menu could not be read (%v)", err)}, nil
		}
		return ISOBoot{}, err
	}
	e, err := bootmenu.Select(menus, entry)
	if err != nil {
		if boot != BootDirect && entry == "" {
			// No menu (or no default): only the firmware can boot it.
			return ISOBoot{Path: BootFirmware, Why: err.Error()}, nil
		}
		return ISOBoot{}, fmt.Errorf("%w: %v", ErrBootChoice, err)
	}
	res := ISOBoot{Entry: e}
	switch {
	case boot == BootFirmware:
		res.Path, res.Why = BootFirmware, "--boot firmware"
	case boot == BootDirect:
		res.Path, res.Why = BootDirect, "--boot direct"
	case e.SerialConsole() && e.Default:
		res.Path, res.Why = BootFirmware, "the default entry already has a serial console"
	case !e.Bootable():
		res.Path, res.Why = BootFirmware, fmt.Sprintf("entry %q cannot be booted directly (%v)", e.Label, e.Unresolved)
		if entry != "" {
			return ISOBoot{}, fmt.Errorf("%w: entry %q cannot be booted directly: %v", ErrBootChoice, e.Label, e.Unresolved)
		}
	case e.SerialConsole():
		res.Path, res.Why = BootDirect, "the entry is not the bootloader's default"
	default:
		res.Path, res.Why = BootDirect, "the entry has no serial console"
	}
	if res.Path == BootFirmware {
		img.Kernel, img.Initrd, img.Append = "", "", ""
		img.Entry, img.EntryCmdline = e.Label, e.Cmdline
		return res, nil
	}
	x, err := bootmenu.Extract(ctx, img.ISO, e, directCacheDir(cache))
	if err != nil {
		return ISOBoot{}, err
	}
	img.Kernel, img.Initrd, img.Append, img.Entry = x.Kernel, x.Initrd, e.DirectCmdline(), e.Label
	return res, nil
}
