package isoinspect

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable makes a string from an image safe to print on a terminal: names, labels
// and key comments are chosen by whoever built the image, and an escape sequence in
// one could move the cursor and rewrite the fingerprint line above it. Control and
// other non-printable characters, invalid UTF-8 and the backslash itself (so the
// result reads unambiguously) are written as Go-style escapes (\x1b, \u202e).
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || r == '\\' || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x80 && !unicode.IsPrint(r):
			fmt.Fprintf(&b, "\\x%02x", r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
		i += n
	}
	return b.String()
}

// WriteText prints the report for `bootlab inspect`: the root key and fingerprint
// first (the usual question), then units, then, with files=true, every file.
func (rep *Report) WriteText(w io.Writer, files bool) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "image: %s (%s)\n", Printable(rep.Image), rep.Kind)
	if rep.Label != "" {
		if rep.Kind == "kernel" {
			fmt.Fprintf(bw, "kernel: %s\n", Printable(rep.Label))
		} else {
			fmt.Fprintf(bw, "label: %s\n", Printable(rep.Label))
		}
	}
	if rep.Names != "" {
		fmt.Fprintf(bw, "names: %s\n", rep.Names)
	}
	for _, b := range rep.Boot {
		boot := "not bootable"
		if b.Bootable {
			boot = "bootable"
		}
		file := ""
		if b.File != "" {
			file = " " + where("", b.File)
		}
		fmt.Fprintf(bw, "boot image: %s, %s, %s, sector %d (%d x 512 bytes)%s\n", b.Platform, b.Media, boot, b.Sector, b.Sectors, file)
	}
	for i, l := range rep.Layers {
		fmt.Fprintf(bw, "layer %d: %s\n", i+1, Printable(l))
	}
	if rep.RootKey != nil {
		fmt.Fprintf(bw, "root key: %s\n", Printable(rep.RootKey.Line))
		fmt.Fprintf(bw, "root key fingerprint: %s\n", rep.RootKey.Fingerprint)
		fmt.Fprintf(bw, "root key file: %s\n", where(rep.RootKey.Layer, rep.RootKey.Path))
		if rep.RootKey.Resolved != "" {
			fmt.Fprintf(bw, "root key file resolves to: %s\n", where(rep.RootKey.Layer, rep.RootKey.Resolved))
		}
		for _, k := range rep.Keys[:len(rep.Keys)-1] {
			fmt.Fprintf(bw, "shadowed key: %s %s\n", k.Fingerprint, where(k.Layer, k.Path))
		}
	} else {
		where := "in every squashfs, <nixos-system>/etc/" + NixEtcKeyPath + " in a Nix store squashfs, and " + ISOKeyName + " on the image"
		if rep.Kind == "kernel" {
			where = "and " + ISOKeyName + " in the initrd"
		}
		fmt.Fprintf(bw, "root key: none found (looked for %s %s)\n", SquashfsKeyPath, where)
	}
	fmt.Fprintf(bw, "unit files: %d\n", len(rep.Units))
	for _, u := range rep.Units {
		fmt.Fprintf(bw, "  %s\n", where(u.Layer, u.Path))
	}
	if files {
		fmt.Fprintf(bw, "files: %d\n", len(rep.Files))
		for _, f := range rep.Files {
			line := fmt.Sprintf("  %s %10d %s", f.Mode, f.Size, where(f.Layer, f.Path))
			if f.Link != "" {
				line += " -> " + Printable(f.Link)
			}
			fmt.Fprintln(bw, line)
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(bw, "problem: %s\n", Printable(p))
	}
	return bw.Flush()
}

func where(layer, p string) string {
	if layer == "" {
		return Printable("/" + p)
	}
	return Printable(layer + ":/" + p)
}
