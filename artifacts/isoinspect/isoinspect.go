// Package isoinspect looks inside boot images without booting or mounting them (no root,
// no loop devices): an ISO9660 image and every squashfs inside it, or a kernel plus its
// initrd. It answers what a person asks before trusting a boot: which files are there,
// which root key is embedded (and its SSH fingerprint, to compare with the key the
// harness will log in with), and which systemd units ship.
package isoinspect

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"golang.org/x/crypto/ssh"
)

// Where the root key lives: inside a squashfs layer (the root filesystem as booted) or
// on the ISO itself (the NixOS image's pre_nixos directory).
const (
	SquashfsKeyPath = "etc/pre-nixos/root_key.pub"
	ISOKeyName      = "pre_nixos/root_key.pub"
)

// File is one entry of an image.
type File struct {
	// Layer is "" for the ISO itself, the squashfs path on the ISO (e.g.
	// "live/filesystem.squashfs") for files inside it, or "initrd".
	Layer string      `json:"layer,omitempty"`
	Path  string      `json:"path"` // slash-separated, no leading slash
	Size  int64       `json:"size"`
	Mode  fs.FileMode `json:"mode"`
	// Link is a symlink's target, when known.
	Link string `json:"link,omitempty"`
}

// Key is an embedded root public key.
type Key struct {
	Layer string `json:"layer,omitempty"`
	Path  string `json:"path"`
	// Resolved is the file Path leads to through symlinks (a NixOS /etc entry is a
	// link into another store path), when it differs.
	Resolved    string `json:"resolved,omitempty"`
	Line        string `json:"line"` // authorized_keys line
	Fingerprint string `json:"fingerprint"`
}

// Report is what an inspection found.
type Report struct {
	Image string `json:"image"`
	Kind  string `json:"kind"` // iso | kernel
	Label string `json:"label,omitempty"`
	// Names says which names an ISO's tree carries: "rock ridge", "joliet" or
	// "iso9660".
	Names string `json:"names,omitempty"`
	// Boot is an ISO's El Torito boot catalog: what BIOS and EFI firmware load.
	Boot []BootImage `json:"boot_images,omitempty"`
	// Layers are the squashfs files found, in the order live-boot stacks them.
	Layers []string `json:"layers,omitempty"`
	Files  []File   `json:"files"`
	// Keys are all root keys found, lowest layer first; RootKey is the one that wins
	// (the last: a later layer shadows an earlier one, as in the booted overlay).
	Keys    []Key `json:"keys,omitempty"`
	RootKey *Key  `json:"root_key,omitempty"`
	// Units are systemd unit files (*.service) under etc/systemd or lib/systemd
	// (usr/lib/systemd too, where merged /usr puts them).
	Units []File `json:"units,omitempty"`
	// Problems are parts that could not be read (a corrupt layer): reported, not
	// fatal, so the rest of the image is still shown.
	Problems []string `json:"problems,omitempty"`
}

// KeyFingerprint parses an authorized_keys line and returns its SSH SHA256 fingerprint
// ("SHA256:..."), the form ssh-keygen -l and the harness logs print.
func KeyFingerprint(pubkeyLine string) (string, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(pubkeyLine)))
	if err != nil {
		return "", fmt.Errorf("parsing public key: %w", err)
	}
	return ssh.FingerprintSHA256(k), nil
}

// MaxKeyFile caps a root key file: an authorized_keys line is under 1 KiB (an
// RSA-16384 key is about 2.8 KiB), so a larger "key" is a broken or hostile image
// and is an error before anything is read.
const MaxKeyFile = 64 << 10

// Deadlines of one inspection when the caller's context has none sooner: RootKey runs
// before every boot, so a hostile or damaged image must not hold a run forever; a full
// listing of a large root filesystem (`bootlab inspect`) is allowed longer.
var (
	RootKeyTimeout = 60 * time.Second
	InspectTimeout = 5 * time.Minute
)

// InspectISO reads the ISO at isoPath and every *.squashfs on it.
func InspectISO(ctx context.Context, isoPath string) (*Report, error) {
	ctx, cancel := context.WithTimeout(ctx, InspectTimeout)
	defer cancel()
	return inspectISO(ctx, isoPath, false)
}

// RootKey finds only the winning root key of an ISO (nil when there is none), without
// listing the root filesystem: fast enough to run before every boot for the metadata.
func RootKey(ctx context.Context, isoPath string) (*Key, error) {
	ctx, cancel := context.WithTimeout(ctx, RootKeyTimeout)
	defer cancel()
	rep, err := inspectISO(ctx, isoPath, true)
	if err != nil {
		return nil, err
	}
	if rep.RootKey == nil && len(rep.Problems) > 0 {
		return nil, fmt.Errorf("looking for the root key in %s: %s", isoPath, strings.Join(rep.Problems, "; "))
	}
	return rep.RootKey, nil
}

func inspectISO(ctx context.Context, isoPath string, keysOnly bool) (*Report, error) {
	opened, err := OpenISO(ctx, isoPath)
	if err != nil {
		return nil, err
	}
	defer opened.Close()
	f, iso := opened.f, opened.img
	rep := &Report{Image: isoPath, Kind: "iso", Label: opened.Label(), Names: iso.Names, Boot: iso.Boot}
	var isoFiles []File
	for _, e := range iso.Entries {
		fl := File{Path: e.Path, Size: e.Size, Mode: e.Mode, Link: e.Link}
		isoFiles = append(isoFiles, fl)
	}
	if !keysOnly {
		rep.Files = append(rep.Files, isoFiles...)
	}
	for _, e := range iso.Entries {
		if e.Mode.IsRegular() && (e.Path == ISOKeyName || strings.HasSuffix(e.Path, "/"+ISOKeyName)) {
			b, err := iso.readFile(e, MaxKeyFile)
			rep.addKey("", e.Path, "", b, err)
		}
		if e.Mode.IsRegular() && strings.HasSuffix(e.Path, ".squashfs") {
			rep.Layers = append(rep.Layers, e.Path)
		}
	}
	// live-boot mounts the squashfs files of a directory in name order and stacks each
	// over the previous, so that is the order in which later keys win.
	sort.Slice(rep.Layers, func(i, j int) bool {
		di, dj := path.Dir(rep.Layers[i]), path.Dir(rep.Layers[j])
		if di != dj {
			return di < dj
		}
		return rep.Layers[i] < rep.Layers[j]
	})
	toplevel := bootToplevel(iso)
	b := file.New(f, true)
	for _, layer := range rep.Layers {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("inspecting %s: %w", isoPath, err)
		}
		e, _ := iso.lookup(layer)
		// The squashfs reader checks no context, so one call on a hostile layer could
		// outlive any deadline: it runs on its own goroutine into its own report, and
		// at the deadline it is left behind rather than waited for (closing the image
		// on return makes its further reads fail).
		lrep := &Report{}
		done := make(chan error, 1)
		go func() {
			done <- safely(func() error { return lrep.inspectLayer(ctx, b, iso, e, keysOnly, toplevel) })
		}()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("inspecting %s: %s: %w", isoPath, layer, ctx.Err())
		}
		if err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("inspecting %s: %s: %w", isoPath, layer, err)
		}
		rep.Files = append(rep.Files, lrep.Files...)
		rep.Keys = append(rep.Keys, lrep.Keys...)
		rep.Problems = append(rep.Problems, lrep.Problems...)
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %v", layer, err))
		}
	}
	rep.finish()
	return rep, nil
}

// readSquashfs is squashfs.Read; a test swaps in a reader that never returns.
var readSquashfs = squashfs.Read

// safely turns a panic of the squashfs reader (a library that trusts the bytes it
// reads) into an error, so one damaged layer cannot take the harness down.
func safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: the squashfs reader failed: %v", ErrHostile, r)
		}
	}()
	return fn()
}

func (rep *Report) inspectLayer(ctx context.Context, b backend.Storage, iso *isoImage, e isoEntry, keysOnly bool, toplevel string) error {
	// A file on an ISO is one contiguous extent, so the squashfs can be read in place,
	// without copying hundreds of MiB to a temporary file. readISO checked that the
	// extent lies inside the image.
	sq, err := readSquashfs(b, e.Size, e.Offset, 0)
	if err != nil {
		return fmt.Errorf("reading squashfs: %w", err)
	}
	layer := e.Path
	if keysOnly {
		if st, err := fs.Stat(sq, SquashfsKeyPath); err == nil && st.Mode().IsRegular() {
			b, err := readSquashFile(sq, SquashfsKeyPath, MaxKeyFile)
			rep.addKey(layer, SquashfsKeyPath, "", b, err)
		}
	} else {
		files, err := walk(ctx, sq, layer)
		if err != nil {
			return err
		}
		rep.Files = append(rep.Files, files...)
		for _, f := range files {
			if f.Path == SquashfsKeyPath && f.Mode.IsRegular() {
				b, err := readSquashFile(sq, f.Path, MaxKeyFile)
				rep.addKey(layer, f.Path, "", b, err)
			}
		}
	}
	rep.nixStoreKeys(ctx, sq, layer, toplevel)
	return nil
}

// readSquashFile reads a regular file of at most max bytes from a squashfs: the
// claimed size is checked first, and the read is bounded whatever the inode says.
func readSquashFile(sq fs.FS, p string, max int64) ([]byte, error) {
	st, err := fs.Stat(sq, p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%s claims %d bytes, more than the %d a key file may have", p, st.Size(), max)
	}
	f, err := sq.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s holds more than %d bytes", p, max)
	}
	return data, nil
}

// addKey records the key in data (read from layer:p, resolved to resolved when it
// was reached through symlinks), or a problem when reading or parsing failed.
func (rep *Report) addKey(layer, p, resolved string, data []byte, err error) {
	if err == nil {
		line := firstKeyLine(string(data))
		var fp string
		if fp, err = KeyFingerprint(line); err == nil {
			rep.Keys = append(rep.Keys, Key{Layer: layer, Path: p, Resolved: resolved, Line: line, Fingerprint: fp})
			return
		}
	}
	rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %v", strings.TrimPrefix(layer+":/"+p, ":"), err))
}

func firstKeyLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return ""
}

// finish picks the winning key and collects unit files.
func (rep *Report) finish() {
	if n := len(rep.Keys); n > 0 {
		// The ISO's own pre_nixos key (layer "") is what the NixOS image copies in at
		// boot; a squashfs key is the fixture's. Prefer the topmost squashfs layer, as
		// booted, and fall back to the ISO file.
		k := rep.Keys[n-1]
		rep.RootKey = &k
	}
	for _, f := range rep.Files {
		if isUnit(f.Path) {
			rep.Units = append(rep.Units, f)
		}
	}
}

func isUnit(p string) bool {
	if !strings.HasSuffix(p, ".service") {
		return false
	}
	for _, pre := range []string{"etc/systemd/", "lib/systemd/", "usr/lib/systemd/"} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	// Nix store paths: nix/store/<hash>-unit-x.service/ or .../etc/systemd/system/x.service
	return strings.Contains(p, "/etc/systemd/") || strings.Contains(p, "/lib/systemd/")
}

// walk lists every entry of fsys with paths relative to its root.
func walk(ctx context.Context, fsys fs.FS, layer string) ([]File, error) {
	var out []File
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		f := File{Layer: layer, Path: p, Size: info.Size(), Mode: info.Mode()}
		if !info.Mode().IsRegular() {
			f.Size = 0
		}
		out = append(out, f)
		return nil
	})
	return out, err
}
