// Package disko translates a plan into disko's `disko.devices` and renders
// the disko-config.nix text (docs/provisioner.md, "Backends"), byte-stable for
// golden tests.
package disko

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/bootlab/bootlab/provisioner/planner"
)

// DefaultConfigPath is where the rendered config is written (under --root).
const DefaultConfigPath = "/var/log/pre-nixos/disko-config.nix"

type obj = map[string]any

// Devices builds the disko.devices value. With perms, filesystem contents
// carry `mountpointPermissions: 0` as the recorded plan does; disko itself
// rejects that key, so Render strips it.
func Devices(p *planner.Plan, perms bool) (obj, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	arrayOf, vgOf := p.Users()
	_, espLabel := p.ESPLabels()
	disks := obj{}
	first := true
	for _, dp := range p.Partitions {
		parts := obj{}
		for _, part := range dp.Partitions {
			switch {
			case part.Type == planner.PartEFI:
				content := obj{"type": "filesystem", "format": "vfat", "extraArgs": []any{"-n", espLabel[part.Name]}}
				if first {
					content["mountpoint"] = "/boot"
					content["mountOptions"] = []any{"umask=0077"}
					if perms {
						content["mountpointPermissions"] = 0
					}
					first = false
				}
				parts[part.Name] = obj{"size": "1G", "type": "EF00", "content": content}
			case arrayOf[part.Name] != "":
				parts[part.Name] = obj{"size": "100%", "content": obj{"type": "mdraid", "name": arrayOf[part.Name]}}
			default:
				parts[part.Name] = obj{"size": "100%", "content": obj{"type": "lvm_pv", "vg": vgOf[part.Name]}}
			}
		}
		disks[dp.Disk] = obj{"type": "disk", "device": "/dev/" + dp.Disk, "content": obj{"type": "gpt", "partitions": parts}}
	}
	mdadm := obj{}
	for _, a := range p.Arrays {
		mdadm[a.Name] = obj{"type": "mdadm", "level": planner.Levels[a.Level], "content": obj{"type": "lvm_pv", "vg": vgOf[a.Name]}}
	}
	// Every VG is declared, even without LVs: the Python pre-nixos omitted
	// them while their PVs still named them.
	vgs := obj{}
	for _, vg := range p.VGs {
		vgs[vg.Name] = obj{"type": "lvm_vg", "lvs": obj{}}
	}
	for _, lv := range p.LVs {
		var content obj
		if planner.IsSwap(lv.Name) {
			content = obj{"type": "swap", "extraArgs": []any{"--label", planner.LVLabel(lv.Name)}}
		} else {
			content = obj{"type": "filesystem", "format": "ext4", "mountpoint": planner.Mountpoint(lv.Name),
				"mountOptions": []any{"relatime"}, "extraArgs": []any{"-L", planner.LVLabel(lv.Name)}}
			if perms {
				content["mountpointPermissions"] = 0
			}
		}
		vgs[lv.VG].(obj)["lvs"].(obj)[lv.Name] = obj{"size": lv.Size, "content": content}
	}
	return obj{"disk": disks, "mdadm": mdadm, "lvm_vg": vgs}, nil
}

// Render returns the disko-config.nix text for p.
func Render(p *planner.Plan) ([]byte, error) {
	devs, err := Devices(p, false)
	if err != nil {
		return nil, fmt.Errorf("rendering disko config: %w", err)
	}
	js, err := SortedJSON(devs)
	if err != nil {
		return nil, fmt.Errorf("rendering disko config: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("{\n  disko.devices = builtins.fromJSON ''\n")
	for _, line := range strings.Split(string(js), "\n") {
		b.WriteString("    " + escapeNixIndented(line) + "\n")
	}
	b.WriteString("  '';\n}\n")
	return b.Bytes(), nil
}

// escapeNixIndented escapes the two sequences with meaning inside a Nix ”
// string: ” (ends it) and ${ (interpolation).
func escapeNixIndented(s string) string {
	s = strings.ReplaceAll(s, "''", "'''")
	return strings.ReplaceAll(s, "${", "''${")
}

// SortedJSON encodes v with sorted keys, indent 2, no HTML escaping and every
// non-ASCII rune as \uXXXX, matching Python's json.dumps(indent=2,
// sort_keys=True) so golden files stay byte-identical to the Python pre-nixos.
func SortedJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	out := bytes.TrimRight(b.Bytes(), "\n")
	return asciiEscape(out), nil
}

func asciiEscape(in []byte) []byte {
	var b bytes.Buffer
	for len(in) > 0 {
		r, size := utf8.DecodeRune(in)
		switch {
		case r < utf8.RuneSelf:
			b.WriteByte(in[0])
		case r > 0xFFFF:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		in = in[size:]
	}
	return b.Bytes()
}
