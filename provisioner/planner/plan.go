package planner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/bootlab/bootlab/provisioner/inventory"
)

// Array is one md RAID array.
type Array struct {
	Name    string   `json:"name"`
	Level   string   `json:"level"`
	Devices []string `json:"devices"`
	Type    string   `json:"type"`
}

// VG is one LVM volume group.
type VG struct {
	Name    string   `json:"name"`
	Devices []string `json:"devices"`
}

// LV is one logical volume; Size uses the plan's "50G"/"2304M" notation.
type LV struct {
	Name string `json:"name"`
	VG   string `json:"vg"`
	Size string `json:"size"`
}

// Partition is one planned GPT partition.
type Partition struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Partition types.
const (
	PartEFI       = "efi"
	PartLVM       = "lvm"
	PartLinuxRAID = "linux-raid"
)

// DiskPartitions is the partition list of one disk. Plans keep disks in
// processing order, which JSON objects cannot express, hence a slice that
// marshals as an ordered object.
type DiskPartitions struct {
	Disk       string
	Partitions []Partition
}

// PartitionMap marshals as a JSON object keyed by disk, in slice order.
type PartitionMap []DiskPartitions

// Plan is the storage plan. Its JSON form is what `--output plan` prints,
// `--plan FILE` loads and storage-plan.json records (docs/provisioner.md).
type Plan struct {
	Arrays     []Array      `json:"arrays"`
	VGs        []VG         `json:"vgs"`
	LVs        []LV         `json:"lvs"`
	Partitions PartitionMap `json:"partitions"`
	// Disko holds the rendered devices when a plan is recorded after apply;
	// planning never fills it, and loading ignores it because the layout is
	// always derived from the fields above (an edited plan can never apply a
	// stale layout, unlike the Python pre-nixos).
	Disko             any      `json:"disko,omitempty"`
	PostApplyCommands []string `json:"post_apply_commands,omitempty"`
}

// MarshalJSON implements json.Marshaler.
func (m PartitionMap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, dp := range m {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshalNoEscape(dp.Disk)
		if err != nil {
			return nil, err
		}
		parts := dp.Partitions
		if parts == nil {
			parts = []Partition{}
		}
		v, err := marshalNoEscape(parts)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON implements json.Unmarshaler, keeping key order.
func (m *PartitionMap) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("partitions must be an object of disk name to partition list")
	}
	out := PartitionMap{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		var parts []Partition
		if err := dec.Decode(&parts); err != nil {
			return fmt.Errorf("partitions of %q: %w", key, err)
		}
		out = append(out, DiskPartitions{Disk: key, Partitions: parts})
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	*m = out
	return nil
}

func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// JSON renders the plan as printed by `--output plan`: indent 2, keys in field
// order (arrays, vgs, lvs, partitions, then disko and post_apply_commands when
// set, as the Python pre-nixos printed them), no HTML escaping, trailing newline.
func (p *Plan) JSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	cp := *p
	cp.normalise()
	if err := enc.Encode(&cp); err != nil {
		return nil, fmt.Errorf("encoding plan: %w", err)
	}
	return b.Bytes(), nil
}

// normalise turns nil lists into empty ones so JSON shows [] and not null.
func (p *Plan) normalise() {
	if p.Arrays == nil {
		p.Arrays = []Array{}
	}
	if p.VGs == nil {
		p.VGs = []VG{}
	}
	if p.LVs == nil {
		p.LVs = []LV{}
	}
	if p.Partitions == nil {
		p.Partitions = PartitionMap{}
	}
	for i := range p.Arrays {
		if p.Arrays[i].Devices == nil {
			p.Arrays[i].Devices = []string{}
		}
	}
	for i := range p.VGs {
		if p.VGs[i].Devices == nil {
			p.VGs[i].Devices = []string{}
		}
	}
}

var (
	diskNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	lvmNameRe  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_+.-]{0,63}$`)
	arrayRe    = regexp.MustCompile(`^md[0-9]{1,3}$`)
	sizeRe     = regexp.MustCompile(`^[0-9]{1,15}[GM]?$`)
)

// Levels are the md RAID levels a plan may use and their mdadm numbers.
var Levels = map[string]int{"raid0": 0, "raid1": 1, "raid5": 5, "raid6": 6, "raid10": 10}

// minMembers is the smallest member count mdadm accepts for each level.
var minMembers = map[string]int{"raid0": 2, "raid1": 2, "raid5": 3, "raid6": 4, "raid10": 4}

// Load reads and validates a plan (for example a recorded or hand-edited
// storage-plan.json). Anything a backend could not apply unambiguously is
// rejected here, before a disk is touched.
func Load(r io.Reader) (*Plan, error) {
	dec := json.NewDecoder(io.LimitReader(r, 4<<20))
	var raw struct {
		Plan
		DiskoConfigPath any `json:"disko_config_path"`
	}
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("decoding plan JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decoding plan JSON: trailing data after the plan object")
	}
	p := raw.Plan
	p.Disko = nil
	p.normalise()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks the plan's internal consistency.
func (p *Plan) Validate() error {
	partType := map[string]string{}
	partDisk := map[string]string{}
	seenDisk := map[string]bool{}
	for _, dp := range p.Partitions {
		if !diskNameRe.MatchString(dp.Disk) {
			return fmt.Errorf("invalid plan: bad disk name %q", dp.Disk)
		}
		if seenDisk[dp.Disk] {
			return fmt.Errorf("invalid plan: disk %s listed twice", dp.Disk)
		}
		seenDisk[dp.Disk] = true
		if len(dp.Partitions) == 0 || len(dp.Partitions) > 128 {
			return fmt.Errorf("invalid plan: disk %s has %d partitions", dp.Disk, len(dp.Partitions))
		}
		for i, part := range dp.Partitions {
			want := inventory.PartitionName(dp.Disk, i+1)
			if part.Name != want {
				return fmt.Errorf("invalid plan: partition %d of %s is named %q, want %q", i+1, dp.Disk, part.Name, want)
			}
			switch part.Type {
			case PartEFI, PartLVM, PartLinuxRAID:
			default:
				return fmt.Errorf("invalid plan: partition %s has unknown type %q", part.Name, part.Type)
			}
			if _, dup := partType[part.Name]; dup {
				return fmt.Errorf("invalid plan: partition %s listed twice", part.Name)
			}
			partType[part.Name] = part.Type
			partDisk[part.Name] = dp.Disk
		}
	}
	used := map[string]string{} // device -> user
	use := func(dev, by string) error {
		if prev, ok := used[dev]; ok {
			return fmt.Errorf("invalid plan: %s is used by both %s and %s", dev, prev, by)
		}
		used[dev] = by
		return nil
	}
	arrays := map[string]bool{}
	for _, a := range p.Arrays {
		if !arrayRe.MatchString(a.Name) || arrays[a.Name] {
			return fmt.Errorf("invalid plan: bad or repeated array name %q", a.Name)
		}
		arrays[a.Name] = true
		if _, ok := Levels[a.Level]; !ok {
			return fmt.Errorf("invalid plan: array %s has unknown level %q", a.Name, a.Level)
		}
		if a.Type != "ssd" && a.Type != "hdd" {
			return fmt.Errorf("invalid plan: array %s has unknown type %q", a.Name, a.Type)
		}
		if len(a.Devices) < minMembers[a.Level] {
			return fmt.Errorf("invalid plan: array %s (%s) needs at least %d devices, has %d", a.Name, a.Level, minMembers[a.Level], len(a.Devices))
		}
		for _, d := range a.Devices {
			if partType[d] != PartLinuxRAID {
				return fmt.Errorf("invalid plan: array %s member %q is not a planned linux-raid partition", a.Name, d)
			}
			if err := use(d, a.Name); err != nil {
				return err
			}
		}
	}
	vgs := map[string]bool{}
	for _, vg := range p.VGs {
		if !lvmNameRe.MatchString(vg.Name) || vgs[vg.Name] {
			return fmt.Errorf("invalid plan: bad or repeated VG name %q", vg.Name)
		}
		vgs[vg.Name] = true
		if len(vg.Devices) == 0 {
			return fmt.Errorf("invalid plan: VG %s has no devices", vg.Name)
		}
		for _, d := range vg.Devices {
			if !arrays[d] && partType[d] != PartLVM {
				return fmt.Errorf("invalid plan: VG %s device %q is neither an array nor an lvm partition", vg.Name, d)
			}
			if err := use(d, "VG "+vg.Name); err != nil {
				return err
			}
		}
	}
	for name, typ := range partType {
		if typ != PartEFI && used[name] == "" {
			return fmt.Errorf("invalid plan: partition %s (%s) is not used by any array or VG", name, typ)
		}
	}
	for a := range arrays {
		if used[a] == "" {
			return fmt.Errorf("invalid plan: array %s is not used by any VG", a)
		}
	}
	lvs := map[string]bool{}
	for _, lv := range p.LVs {
		if !lvmNameRe.MatchString(lv.Name) || lvs[lv.Name] {
			return fmt.Errorf("invalid plan: bad or repeated LV name %q", lv.Name)
		}
		lvs[lv.Name] = true
		if !vgs[lv.VG] {
			return fmt.Errorf("invalid plan: LV %s is on unknown VG %q", lv.Name, lv.VG)
		}
		n, err := ParseSize(lv.Size)
		if err != nil || n <= 0 {
			return fmt.Errorf("invalid plan: LV %s has bad size %q", lv.Name, lv.Size)
		}
	}
	for _, c := range p.PostApplyCommands {
		if _, err := p.PostApplyArgv(c); err != nil {
			return fmt.Errorf("invalid plan: %w", err)
		}
	}
	return nil
}

// stickyLVs are the LVs whose mountpoint gets mode 1777 after apply.
var stickyLVs = map[string]bool{"var_tmp": true, "tmp": true}

// PostApplyArgv maps a post-apply command to the argv that runs it. Plan
// files are operator input run as root, so no shell is involved and only
// the commands the planner itself emits are accepted: `chmod 1777 /mnt<mp>`
// for a planned temporary-directory LV.
func (p *Plan) PostApplyArgv(c string) ([]string, error) {
	for _, lv := range p.LVs {
		if !stickyLVs[lv.Name] {
			continue
		}
		argv := []string{"chmod", "1777", "/mnt" + Mountpoint(lv.Name)}
		if c == strings.Join(argv, " ") {
			return argv, nil
		}
	}
	return nil, fmt.Errorf("post-apply command %q is not allowed (only \"chmod 1777 /mnt/var/tmp\" for a planned var_tmp LV)", c)
}

// ParseSize parses "50G", "2304M" or a plain byte count.
func ParseSize(s string) (int64, error) {
	if !sizeRe.MatchString(s) {
		return 0, fmt.Errorf("bad size %q", s)
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'G':
		mult, s = GiB, s[:len(s)-1]
	case 'M':
		mult, s = MiB, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: %w", s, err)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return n * mult, nil
}

// FormatSize renders bytes as "<n>G", "<n>M" or a plain count.
func FormatSize(b int64) string {
	switch {
	case b%GiB == 0:
		return strconv.FormatInt(b/GiB, 10) + "G"
	case b%MiB == 0:
		return strconv.FormatInt(b/MiB, 10) + "M"
	}
	return strconv.FormatInt(b, 10)
}

// Mountpoint is where an LV is mounted ("" for swap).
func Mountpoint(lv string) string {
	switch lv {
	case "swap":
		return ""
	case "slash":
		return "/"
	case "var_tmp":
		return "/var/tmp"
	case "var_log":
		return "/var/log"
	}
	return "/" + lv
}

// IsSwap reports whether an LV holds swap.
func IsSwap(lv string) bool { return lv == "swap" }

var nonAlnum = regexp.MustCompile(`[^A-Za-z0-9]+`)

// Label sanitises name into a filesystem label of at most max characters.
func Label(name string, max int) string {
	l := strings.Trim(nonAlnum.ReplaceAllString(name, "_"), "_")
	if l == "" {
		l = "vol"
	}
	if len(l) > max {
		l = l[:max]
	}
	return l
}

// LVLabel is the label of an LV's filesystem or swap area.
func LVLabel(lv string) string {
	if IsSwap(lv) {
		return Label(lv, 15)
	}
	return Label(lv, 16)
}

// ESPLabels maps each EFI partition to its label: EFI, EFI2, EFI3... in plan
// order. The first is the one mounted at /boot.
func (p *Plan) ESPLabels() ([]string, map[string]string) {
	var order []string
	labels := map[string]string{}
	for _, dp := range p.Partitions {
		for _, part := range dp.Partitions {
			if part.Type != PartEFI {
				continue
			}
			order = append(order, part.Name)
			if len(order) == 1 {
				labels[part.Name] = "EFI"
			} else {
				labels[part.Name] = fmt.Sprintf("EFI%d", len(order))
			}
		}
	}
	return order, labels
}

// Users maps each device (partition or array) to the array or VG that uses it.
func (p *Plan) Users() (arrayOf, vgOf map[string]string) {
	arrayOf, vgOf = map[string]string{}, map[string]string{}
	for _, a := range p.Arrays {
		for _, d := range a.Devices {
			arrayOf[d] = a.Name
		}
	}
	for _, vg := range p.VGs {
		for _, d := range vg.Devices {
			vgOf[d] = vg.Name
		}
	}
	return arrayOf, vgOf
}
