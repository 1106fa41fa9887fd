// Package isoinspect looks inside boot images without booting or mounting them (no root,
// no loop devices): an ISO9660 image and every squashfs inside it, or a kernel plus its
// initrd. It answers what a person asks before trusting a boot: which files are there,
// which root key is embedded (and its SSH fingerprint, to compare with the key the
// harness will log in with), and which systemd units ship.
package isoinspect

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
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
	Layer       string `json:"layer,omitempty"`
	Path        string `json:"path"`
	Line        string `json:"line"` // authorized_keys line
	Fingerprint string `json:"fingerprint"`
}

// Report is what an inspection found.
type Report struct {
	Image string `json:"image"`
	Kind  string `json:"kind"` // iso | kernel
	Label string `json:"label,omitempty"`
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

// InspectISO reads the ISO at isoPath and every *.squashfs on it.
func InspectISO(ctx context.Context, isoPath string) (*Report, error) {
	return inspectISO(ctx, isoPath, false)
}

// RootKey finds only the winning root key of an ISO (nil when there is none), without
// listing the root filesystem: fast enough to run before every boot for the metadata.
func RootKey(ctx context.Context, isoPath string) (*Key, error) {
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
	b, err := file.OpenFromPath(isoPath, true)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", isoPath, err)
	}
	defer b.Close()
	st, err := b.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", isoPath, err)
	}
	iso, err := iso9660.Read(b, st.Size(), 0, 0)
	if err != nil {
		return nil, fmt.Errorf("%s is not a readable ISO9660 image: %w", isoPath, err)
	}
	rep := &Report{Image: isoPath, Kind: "iso", Label: strings.TrimSpace(iso.Label())}
	isoFiles, err := walk(ctx, iso, "")
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", isoPath, err)
	}
	if !keysOnly {
		rep.Files = append(rep.Files, isoFiles...)
	}
	for _, f := range isoFiles {
		if f.Mode.IsRegular() && (f.Path == ISOKeyName || strings.HasSuffix(f.Path, "/"+ISOKeyName)) {
			rep.addKey(iso, "", f.Path)
		}
		if f.Mode.IsRegular() && strings.HasSuffix(f.Path, ".squashfs") {
			rep.Layers = append(rep.Layers, f.Path)
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
	for _, layer := range rep.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := rep.inspectLayer(ctx, iso, b, layer, keysOnly); err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %v", layer, err))
		}
	}
	rep.finish()
	return rep, nil
}

func (rep *Report) inspectLayer(ctx context.Context, iso *iso9660.FileSystem, b backend.Storage, layer string, keysOnly bool) error {
	f, err := iso.OpenFile("/"+layer, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	isoFile, ok := f.(*iso9660.File)
	if !ok {
		return fmt.Errorf("unexpected file type %T", f)
	}
	info, err := isoFile.Stat()
	if err != nil {
		return err
	}
	// A file on an ISO is one contiguous extent, so the squashfs can be read in place,
	// without copying hundreds of MiB to a temporary file.
	start := int64(isoFile.Location()) * 2048
	sq, err := squashfs.Read(b, info.Size(), start, 0)
	if err != nil {
		return fmt.Errorf("reading squashfs: %w", err)
	}
	if keysOnly {
		if st, err := fs.Stat(sq, SquashfsKeyPath); err == nil && st.Mode().IsRegular() {
			rep.addKey(sq, layer, SquashfsKeyPath)
		}
		return nil
	}
	files, err := walk(ctx, sq, layer)
	if err != nil {
		return err
	}
	rep.Files = append(rep.Files, files...)
	for _, f := range files {
		if f.Path == SquashfsKeyPath {
			rep.addKey(sq, layer, f.Path)
		}
	}
	return nil
}

func (rep *Report) addKey(fsys fs.FS, layer, p string) {
	b, err := fs.ReadFile(fsys, p)
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s %s: %v", layer, p, err))
		return
	}
	line := firstKeyLine(string(b))
	fp, err := KeyFingerprint(line)
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s %s: %v", layer, p, err))
		return
	}
	rep.Keys = append(rep.Keys, Key{Layer: layer, Path: p, Line: line, Fingerprint: fp})
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
