// Package bootmenu reads the boot menu of an ISO (ISOLINUX/SYSLINUX and GRUB configs)
// without booting it, so that an upstream ISO's entry can be booted directly: its kernel
// and initrd loaded by QEMU and its command line given a serial console the ISO's own
// bootloader would never add.
//
// The parsers are deliberately partial: they understand what distributions' ISO menus
// use (INCLUDE, DEFAULT, LABEL, MENU LABEL/DEFAULT, KERNEL/LINUX, INITRD, APPEND, CONFIG,
// menuentry, linux, initrd, set, source) and report the rest as unresolved instead of
// guessing. Configs are untrusted input: every file read is size-capped, includes are
// depth- and count-limited and loops are errors, so a hostile ISO cannot hang or crash
// the harness.
package bootmenu

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"strings"
)

// Limits on untrusted configs.
const (
	// MaxFileSize is the largest config file read; real ones are a few KiB.
	MaxFileSize = 1 << 20
	// MaxIncludeDepth bounds INCLUDE/source nesting (Debian's deepest is 3).
	MaxIncludeDepth = 16
	// MaxFiles bounds the files read for one menu, repeated includes counted each time.
	MaxFiles = 512
	// MaxEntries bounds the entries of one menu.
	MaxEntries = 4096
)

// Loaders.
const (
	ISOLINUX = "isolinux"
	GRUB     = "grub"
)

// Entry is one bootable (or not) menu entry.
type Entry struct {
	Loader string `json:"loader"`
	// Config is the file (slash-separated, from the ISO root) that defines the entry.
	Config string `json:"config"`
	// Label is the ISOLINUX LABEL, or the GRUB menuentry title.
	Label string `json:"label"`
	// Title is the ISOLINUX MENU LABEL without its ^ hotkey marks (empty for GRUB).
	Title string `json:"title,omitempty"`
	// Menu is the submenu the entry sits in ("" for the top level; nested ones joined
	// with ">").
	Menu string `json:"menu,omitempty"`
	// Kernel and Initrds are absolute paths on the ISO ("/install.amd/vmlinuz").
	Kernel  string   `json:"kernel,omitempty"`
	Initrds []string `json:"initrds,omitempty"`
	// Cmdline is the kernel command line without initrd= words (QEMU's -initrd
	// replaces them).
	Cmdline string `json:"cmdline"`
	Default bool   `json:"default"`
	// Unresolved says why the entry cannot be booted directly (a COM32 module, a
	// variable with no value, a missing kernel...). Empty for a bootable entry.
	Unresolved []string `json:"unresolved,omitempty"`
	// Assumed are guesses made to read the entry that a person may want to check (a
	// GRUB variable with no value here, expanded to nothing as GRUB would).
	Assumed []string `json:"assumed,omitempty"`
}

// Bootable says whether the entry can be booted directly.
func (e Entry) Bootable() bool { return e.Kernel != "" && len(e.Unresolved) == 0 }

// Name is what a person would call the entry: its menu title, else its label.
func (e Entry) Name() string {
	if e.Title != "" {
		return e.Title
	}
	return e.Label
}

var serialConsole = regexp.MustCompile(`(^|\s)console=(ttyS|ttyAMA|hvc|ttysclp)`)

// SerialConsole says whether the entry's command line already puts a console on a
// serial line.
func (e Entry) SerialConsole() bool { return serialConsole.MatchString(e.Cmdline) }

// SerialArg is the console argument a direct boot appends.
const SerialArg = "console=ttyS0,115200n8"

// DirectCmdline is the command line for booting e directly with QEMU: the entry's own
// (console=tty0 and all), with the serial console last so that it becomes /dev/console.
func (e Entry) DirectCmdline() string {
	if e.Cmdline == "" {
		return SerialArg
	}
	last := ""
	for _, w := range strings.Fields(e.Cmdline) {
		if strings.HasPrefix(w, "console=") {
			last = w
		}
	}
	if last == SerialArg {
		// Already the primary console: a second copy would only print everything twice
		// on the same line.
		return e.Cmdline
	}
	return e.Cmdline + " " + SerialArg
}

// Menu is the parsed boot menu of one config file (with what it includes).
type Menu struct {
	Loader  string  `json:"loader"`
	Config  string  `json:"config"`
	Entries []Entry `json:"entries"`
	// Notes are things skipped on purpose that a person may want to know about
	// (a missing INCLUDE, which ISOLINUX ignores too; a default that cannot be resolved).
	Notes []string `json:"notes,omitempty"`
}

// Default returns the entry marked default, if any.
func (m *Menu) Default() (Entry, bool) {
	for _, e := range m.Entries {
		if e.Default {
			return e, true
		}
	}
	return Entry{}, false
}

// ErrLimit is wrapped by errors about configs that exceed a limit.
var ErrLimit = errors.New("boot config exceeds a limit")

// readFile reads a config from fsys with the size cap, falling back to a
// case-insensitive lookup: ISO9660 without Rock Ridge stores upper-case names, and
// ISOLINUX matches them case-insensitively.
func readFile(fsys fs.FS, p string) ([]byte, error) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return nil, fmt.Errorf("reading /: is a directory")
	}
	f, err := fsys.Open(p)
	if err != nil {
		if alt, ok := caseInsensitive(fsys, p); ok {
			f, err = fsys.Open(alt)
		}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		if st.IsDir() {
			return nil, fmt.Errorf("reading /%s: is a directory", p)
		}
		if st.Size() > MaxFileSize {
			return nil, fmt.Errorf("reading /%s: %d bytes, more than the %d a boot config may have: %w", p, st.Size(), MaxFileSize, ErrLimit)
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading /%s: %w", p, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("reading /%s: more than the %d bytes a boot config may have: %w", p, MaxFileSize, ErrLimit)
	}
	return b, nil
}

// Exists says whether p (absolute or not) names a regular file on fsys, matching case
// insensitively as readFile does; it returns the name as stored.
func Exists(fsys fs.FS, p string) (string, bool) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return "", false
	}
	if st, err := fs.Stat(fsys, p); err == nil {
		return p, st.Mode().IsRegular()
	}
	alt, ok := caseInsensitive(fsys, p)
	if !ok {
		return "", false
	}
	st, err := fs.Stat(fsys, alt)
	return alt, err == nil && st.Mode().IsRegular()
}

func caseInsensitive(fsys fs.FS, p string) (string, bool) {
	dir := "."
	out := ""
	for _, part := range strings.Split(p, "/") {
		ents, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return "", false
		}
		found := ""
		for _, e := range ents {
			// ISO9660 level 1 names may carry a ";1" version suffix.
			n := strings.TrimSuffix(e.Name(), ";1")
			if strings.EqualFold(n, part) {
				found = e.Name()
				break
			}
		}
		if found == "" {
			return "", false
		}
		out = path.Join(out, found)
		dir = out
	}
	return out, true
}

// Find reads every boot menu at the places ISOLINUX and GRUB look for one, ISOLINUX
// first (it is what a BIOS boots). A config that exists but cannot be parsed is an
// error; an ISO with no config at all gives no menus and no error.
func Find(fsys fs.FS) ([]*Menu, error) {
	var menus []*Menu
	if cfg, ok := findISOLINUX(fsys); ok {
		m, err := ParseISOLINUX(fsys, cfg)
		if err != nil {
			return nil, err
		}
		menus = append(menus, m)
	}
	for _, cfg := range []string{"boot/grub/grub.cfg", "boot/grub/loopback.cfg", "EFI/BOOT/grub.cfg"} {
		if name, ok := Exists(fsys, cfg); ok {
			m, err := ParseGRUB(fsys, name)
			if err != nil {
				return nil, err
			}
			menus = append(menus, m)
		}
	}
	return menus, nil
}

// findISOLINUX finds the config isolinux.bin would load: the directory holding
// isolinux.bin first, then ISOLINUX's fixed search list; isolinux.cfg before
// syslinux.cfg in each.
func findISOLINUX(fsys fs.FS) (string, bool) {
	dirs := []string{"boot/isolinux", "isolinux", "boot/syslinux", "syslinux", ""}
	var first []string
	for _, d := range dirs {
		if _, ok := Exists(fsys, path.Join(d, "isolinux.bin")); ok {
			first = append(first, d)
		}
	}
	for _, d := range append(first, dirs...) {
		for _, n := range []string{"isolinux.cfg", "syslinux.cfg"} {
			if name, ok := Exists(fsys, path.Join(d, n)); ok {
				return name, true
			}
		}
	}
	return "", false
}

// Select picks an entry from menus: the default of the first menu with one when sel
// is empty; otherwise the entry whose label or title equals sel, else the only entry
// whose label or title matches sel as a regular expression.
func Select(menus []*Menu, sel string) (Entry, error) {
	var all []Entry
	for _, m := range menus {
		all = append(all, m.Entries...)
	}
	if len(all) == 0 {
		return Entry{}, errors.New("the ISO has no boot menu entries (no isolinux.cfg, syslinux.cfg or grub.cfg found)")
	}
	if sel == "" {
		for _, m := range menus {
			if e, ok := m.Default(); ok {
				return e, nil
			}
		}
		return Entry{}, errors.New("the boot menu has no default entry; choose one with --entry")
	}
	for _, e := range all {
		if e.Label == sel || e.Title == sel {
			return e, nil
		}
	}
	re, err := regexp.Compile(sel)
	if err != nil {
		return Entry{}, fmt.Errorf("no entry is labelled %q, and it is not a regular expression: %w", sel, err)
	}
	var hits []Entry
	for _, e := range all {
		if re.MatchString(e.Label) || re.MatchString(e.Title) {
			hits = append(hits, e)
		}
	}
	switch len(hits) {
	case 0:
		return Entry{}, fmt.Errorf("no entry matches %q; entries: %s", sel, names(all))
	case 1:
		return hits[0], nil
	}
	// Debian has the same label in several submenus; the same boot twice is one entry.
	same := true
	for _, h := range hits[1:] {
		if h.Kernel != hits[0].Kernel || h.Cmdline != hits[0].Cmdline || strings.Join(h.Initrds, ",") != strings.Join(hits[0].Initrds, ",") {
			same = false
		}
	}
	if same {
		return hits[0], nil
	}
	return Entry{}, fmt.Errorf("%q matches %d entries (%s); make it match one", sel, len(hits), names(hits))
}

func names(es []Entry) string {
	var s []string
	for _, e := range es {
		n := fmt.Sprintf("%q", e.Label)
		if e.Title != "" && e.Title != e.Label {
			n += fmt.Sprintf(" (%q)", e.Title)
		}
		s = append(s, n)
	}
	return strings.Join(s, ", ")
}

// WriteText lists menus for a person: one block per entry, the default marked with *.
func WriteText(w io.Writer, menus []*Menu) error {
	if len(menus) == 0 {
		_, err := fmt.Fprintln(w, "boot menu: none found (no isolinux.cfg, syslinux.cfg or grub.cfg)")
		return err
	}
	for _, m := range menus {
		if _, err := fmt.Fprintf(w, "boot menu (%s, /%s): %d entries\n", m.Loader, m.Config, len(m.Entries)); err != nil {
			return err
		}
		for _, e := range m.Entries {
			mark := " "
			if e.Default {
				mark = "*"
			}
			serial := "no"
			if e.SerialConsole() {
				serial = "yes"
			}
			label := fmt.Sprintf("%q", e.Label)
			if e.Title != "" && e.Title != e.Label {
				label += fmt.Sprintf(" (%q)", e.Title)
			}
			if e.Menu != "" {
				label += " in submenu " + fmt.Sprintf("%q", e.Menu)
			}
			fmt.Fprintf(w, "%s %s\n", mark, label)
			if e.Kernel != "" {
				fmt.Fprintf(w, "    kernel:  %s\n", e.Kernel)
			}
			if len(e.Initrds) > 0 {
				fmt.Fprintf(w, "    initrd:  %s\n", strings.Join(e.Initrds, " "))
			}
			fmt.Fprintf(w, "    cmdline: %s\n    serial console: %s\n", e.Cmdline, serial)
			for _, u := range e.Unresolved {
				fmt.Fprintf(w, "    not bootable directly: %s\n", u)
			}
			for _, a := range e.Assumed {
				fmt.Fprintf(w, "    assumed: %s\n", a)
			}
		}
		for _, n := range m.Notes {
			if _, err := fmt.Fprintf(w, "  note: %s\n", n); err != nil {
				return err
			}
		}
	}
	_, err := fmt.Fprintln(w, "(* is the default entry)")
	return err
}
