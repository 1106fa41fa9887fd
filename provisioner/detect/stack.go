package detect

import (
	"bufio"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Mount is one entry of the mount table.
type Mount struct{ Source, Target string }

// Stack maps a block device to the whole disks under it through sysfs:
// partitions to their disk, dm/md devices through slaves/, loop devices
// through loop/backing_file to the file system holding the file (via the
// mount table), recursively. It is how the boot medium is found when it is a
// dm device on a partition (Ventoy) or an ISO loop-mounted from a file on an
// internal disk (findiso=), and how the disk gate traces a device to disks.
type Stack struct {
	// SysfsRoot holds block/; empty disables the stack walk.
	SysfsRoot string
	// Realpath resolves /dev symlinks; nil means none.
	Realpath func(string) (string, error)
	// Mounts returns the mount table; nil means none.
	Mounts func() ([]Mount, error)
}

// OSStack is the Stack of this machine, with procRoot/self/mounts (falling
// back to procRoot/mounts) as the mount table.
func OSStack(sysfsRoot, procRoot string) Stack {
	return Stack{SysfsRoot: sysfsRoot, Realpath: filepath.EvalSymlinks, Mounts: func() ([]Mount, error) {
		f, err := os.Open(filepath.Join(procRoot, "self/mounts"))
		if err != nil {
			if f, err = os.Open(filepath.Join(procRoot, "mounts")); err != nil {
				return nil, err
			}
		}
		defer f.Close()
		return ParseMounts(f)
	}}
}

// ParseMounts reads /proc/mounts lines ("SOURCE TARGET FSTYPE ..."),
// decoding the kernel's octal escapes.
func ParseMounts(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		out = append(out, Mount{Source: unescape(f[0]), Target: unescape(f[1])})
	}
	return out, sc.Err()
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

const maxStackDepth = 32

// Disks returns the whole disks (as /dev/NAME) under dev; ok is false when
// sysfs knows nothing about it.
func (s Stack) Disks(dev string) ([]string, bool) {
	if s.SysfsRoot == "" {
		return nil, false
	}
	set := map[string]bool{}
	if !s.walkDev(dev, set, map[string]bool{}, 0) || len(set) == 0 {
		return nil, false
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out, true
}

func (s Stack) block() string { return filepath.Join(s.SysfsRoot, "block") }

// kernelName maps a device path to its sysfs name.
func (s Stack) kernelName(dev string) string {
	if s.Realpath != nil {
		if r, err := s.Realpath(dev); err == nil {
			dev = r
		}
	}
	rest, ok := strings.CutPrefix(path.Clean(dev), "/dev/")
	if !ok {
		return ""
	}
	if !strings.Contains(rest, "/") {
		return rest
	}
	if name, ok := strings.CutPrefix(rest, "mapper/"); ok {
		// Without a resolvable symlink, find the dm device by its name.
		ents, _ := filepath.Glob(filepath.Join(s.block(), "dm-*", "dm", "name"))
		for _, e := range ents {
			if readTrim(e) == name {
				return filepath.Base(filepath.Dir(filepath.Dir(e)))
			}
		}
	}
	return ""
}

func (s Stack) walkDev(dev string, set, seen map[string]bool, depth int) bool {
	name := s.kernelName(dev)
	if name == "" {
		return false
	}
	return s.walk(name, set, seen, depth)
}

func (s Stack) walk(name string, set, seen map[string]bool, depth int) bool {
	if seen[name] {
		return true
	}
	if depth > maxStackDepth || name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/*?[") {
		return false
	}
	seen[name] = true
	dir := filepath.Join(s.block(), name)
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		slaves, _ := os.ReadDir(filepath.Join(dir, "slaves"))
		if len(slaves) > 0 {
			ok := true
			for _, sl := range slaves {
				ok = s.walk(sl.Name(), set, seen, depth+1) && ok
			}
			return ok
		}
		if bf := readTrim(filepath.Join(dir, "loop", "backing_file")); bf != "" {
			return s.walkFile(strings.TrimSuffix(bf, " (deleted)"), set, seen, depth+1)
		}
		set["/dev/"+name] = true
		return true
	}
	// A partition lives under its disk: block/<disk>/<name>/partition.
	parts, _ := filepath.Glob(filepath.Join(s.block(), "*", name, "partition"))
	if len(parts) == 1 {
		return s.walk(filepath.Base(filepath.Dir(filepath.Dir(parts[0]))), set, seen, depth+1)
	}
	return false
}

// walkFile finds the file system holding file (longest mountpoint prefix)
// and walks its source device.
func (s Stack) walkFile(file string, set, seen map[string]bool, depth int) bool {
	if s.Mounts == nil {
		return false
	}
	ms, err := s.Mounts()
	if err != nil {
		return false
	}
	best := Mount{}
	for _, m := range ms {
		t := path.Clean(m.Target)
		if (t == "/" || file == t || strings.HasPrefix(file, t+"/")) && len(t) >= len(best.Target) {
			best = Mount{Source: m.Source, Target: t}
		}
	}
	if !strings.HasPrefix(best.Source, "/dev/") {
		return false
	}
	return s.walkDev(best.Source, set, seen, depth)
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
