package isoinspect

import (
	"bufio"
	"fmt"
	"io"
)

// WriteText prints the report for `bootlab inspect`: the root key and fingerprint
// first (the usual question), then units, then, with files=true, every file.
func (rep *Report) WriteText(w io.Writer, files bool) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "image: %s (%s)\n", rep.Image, rep.Kind)
	if rep.Label != "" {
		if rep.Kind == "kernel" {
			fmt.Fprintf(bw, "kernel: %s\n", rep.Label)
		} else {
			fmt.Fprintf(bw, "label: %s\n", rep.Label)
		}
	}
	for i, l := range rep.Layers {
		fmt.Fprintf(bw, "layer %d: %s\n", i+1, l)
	}
	if rep.RootKey != nil {
		fmt.Fprintf(bw, "root key: %s\n", rep.RootKey.Line)
		fmt.Fprintf(bw, "root key fingerprint: %s\n", rep.RootKey.Fingerprint)
		fmt.Fprintf(bw, "root key file: %s\n", where(rep.RootKey.Layer, rep.RootKey.Path))
		for _, k := range rep.Keys[:len(rep.Keys)-1] {
			fmt.Fprintf(bw, "shadowed key: %s %s\n", k.Fingerprint, where(k.Layer, k.Path))
		}
	} else {
		where := "in every squashfs and " + ISOKeyName + " on the image"
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
				line += " -> " + f.Link
			}
			fmt.Fprintln(bw, line)
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(bw, "problem: %s\n", p)
	}
	return bw.Flush()
}

func where(layer, p string) string {
	if layer == "" {
		return "/" + p
	}
	return layer + ":/" + p
}
