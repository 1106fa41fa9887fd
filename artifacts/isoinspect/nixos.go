package isoinspect

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/filesystem/squashfs"
)

// How a NixOS ISO carries /etc (nixos/modules/installer/cd-dvd/iso-image.nix,
// nixos/lib/make-squashfs.nix, nixos/modules/system/etc/etc.nix): the ISO holds
// /nix-store.squashfs, whose root is the store itself (`<hash>-<name>` directories,
// mounted at /nix/.ro-store under the /nix/store overlay). /etc does not exist in it:
// stage 2's activation builds it from the system's `etc` derivation, where every
// environment.etc entry is `<hash>-etc/etc/<target>`, a symlink to its source
// (`environment.etc."pre-nixos/root_key.pub".text` becomes a store file
// `<hash>-etc-root_key.pub`); an entry with a `mode` also has `<target>.mode`, and
// activation copies instead of linking, with the same bytes. The system toplevel
// `<hash>-nixos-system-<name>-<version>` links `etc` to that derivation's etc, and the
// boot entries name the toplevel in `init=/nix/store/<toplevel>/init`.
//
// So the key of provisioner/nixos/module.nix is found by following
// <toplevel>/etc/pre-nixos/root_key.pub through its symlinks inside the squashfs.

// NixEtcKeyPath is where the NixOS module puts the key, relative to /etc.
const NixEtcKeyPath = "pre-nixos/root_key.pub"

var (
	storeEntry = regexp.MustCompile(`^[0-9a-df-np-sv-z]{32}-`)
	bootInit   = regexp.MustCompile(`init=/nix/store/([0-9a-df-np-sv-z]{32}-[^/\s]+)/init`)
	// Symlink hops while resolving one path: real store chains are 1-3 deep.
	maxLinkHops = 16
)

// bootToplevel returns the system toplevel the ISO's first boot entry starts (the
// default one), or "" when the ISO has no NixOS boot configuration.
func bootToplevel(iso *isoImage) string {
	for _, p := range []string{"isolinux/isolinux.cfg", "boot/grub/grub.cfg", "EFI/BOOT/grub.cfg", "EFI/boot/grub.cfg", "efi/boot/grub.cfg"} {
		e, ok := iso.lookup(p)
		if !ok {
			continue
		}
		b, err := iso.readFile(e, 1<<20)
		if err != nil {
			continue
		}
		if m := bootInit.FindSubmatch(b); m != nil {
			return string(m[1])
		}
	}
	return ""
}

// nixStoreKeys adds the key of every NixOS system in a store squashfs, the booted
// one (toplevel, when known) last so that it wins.
func (rep *Report) nixStoreKeys(ctx context.Context, sq *squashfs.FileSystem, layer, toplevel string) {
	ents, err := sq.ReadDir(".")
	if err != nil {
		return
	}
	var systems, etcs []string
	for _, e := range ents {
		n := e.Name()
		if !storeEntry.MatchString(n) {
			continue
		}
		switch rest := n[33:]; {
		case strings.HasPrefix(rest, "nixos-system-"):
			systems = append(systems, n)
		case rest == "etc":
			etcs = append(etcs, n)
		}
	}
	if len(systems) == 0 && len(etcs) == 0 {
		return
	}
	var candidates []string
	if len(systems) > 0 {
		sort.SliceStable(systems, func(i, j int) bool { return systems[j] == toplevel && systems[i] != toplevel })
		for _, s := range systems {
			candidates = append(candidates, s+"/etc/"+NixEtcKeyPath)
		}
	} else {
		// A store without a toplevel (a partial image): every etc derivation.
		for _, e := range etcs {
			candidates = append(candidates, e+"/etc/"+NixEtcKeyPath)
		}
	}
	for _, c := range candidates {
		if ctx.Err() != nil {
			return
		}
		resolved, err := resolveStorePath(sq, c)
		if err != nil {
			if !isNotExist(err) {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s:/%s: %v", layer, c, err))
			}
			continue
		}
		data, err := readSquashFile(sq, resolved, MaxKeyFile)
		if resolved == c {
			resolved = ""
		}
		rep.addKey(layer, c, resolved, data, err)
	}
}

type notExist struct{ p string }

func (e notExist) Error() string { return e.p + ": no such file" }

func isNotExist(err error) bool { _, ok := err.(notExist); return ok }

// resolveStorePath follows symlinks in p component by component, as the booted
// system would with the squashfs at /nix/store: absolute targets must lie in
// /nix/store (anything else is outside this image), relative ones resolve against
// their directory, and at most maxLinkHops links are followed (a cycle ends there).
func resolveStorePath(sq *squashfs.FileSystem, p string) (string, error) {
	rest := strings.Split(p, "/")
	cur := ""
	hops := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			if cur == "." {
				cur = ""
			}
			continue
		}
		next := path.Join(cur, c)
		st, err := lstat(sq, next)
		if err != nil {
			return "", err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		hops++
		if hops > maxLinkHops {
			return "", fmt.Errorf("%w: more than %d symlinks resolving %s", ErrHostile, maxLinkHops, p)
		}
		t, _ := st.Sys().(*squashfs.StatT)
		if t == nil || t.LinkTarget == "" {
			return "", fmt.Errorf("%s: unreadable symlink", next)
		}
		target := t.LinkTarget
		if strings.HasPrefix(target, "/") {
			if !strings.HasPrefix(target, "/nix/store/") {
				return "", fmt.Errorf("%s links outside the Nix store, to %s", next, target)
			}
			cur = ""
			target = strings.TrimPrefix(target, "/nix/store/")
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return cur, nil
}

// lstat finds p in its directory without following a final symlink.
func lstat(sq *squashfs.FileSystem, p string) (fs.FileInfo, error) {
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	ents, err := sq.ReadDir(dir)
	if err != nil {
		return nil, notExist{p}
	}
	for _, e := range ents {
		if e.Name() == base {
			return e.Info()
		}
	}
	return nil, notExist{p}
}
