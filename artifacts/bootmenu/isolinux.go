package bootmenu

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// ParseISOLINUX parses an ISOLINUX/SYSLINUX config (cfg, slash-separated from the ISO
// root) and what it INCLUDEs. Relative paths are resolved against the config's
// directory, ISOLINUX's working directory, which a CONFIG directive can change.
func ParseISOLINUX(fsys fs.FS, cfg string) (*Menu, error) {
	cfg = strings.TrimPrefix(path.Clean("/"+cfg), "/")
	p := &slParser{fsys: fsys, menu: &Menu{Loader: ISOLINUX, Config: cfg}, cwd: path.Dir(cfg)}
	if err := p.file(cfg, nil); err != nil {
		return nil, fmt.Errorf("reading the ISOLINUX menu %s: %w", cfg, err)
	}
	p.finish()
	return p.menu, nil
}

type slLabel struct {
	Entry
	kernelKind  string // kernel, linux, com32, config, ...
	kernelArg   string
	appendSet   bool
	menuDefault bool
	skip        bool // MENU EXIT / MENU SEPARATOR: navigation, not a boot
	cwd         string
}

type slParser struct {
	fsys      fs.FS
	menu      *Menu
	cwd       string
	labels    []*slLabel
	cur       *slLabel
	submenus  []string
	def       string // DEFAULT
	ui        string // UI
	appendAll string // APPEND before any LABEL: the default for labels without one
	reads     int
	restarted bool // a global CONFIG replaced the config; what follows is not read
}

func (p *slParser) file(name string, stack []string) error {
	if p.restarted {
		return nil
	}
	for _, s := range stack {
		if s == name {
			return fmt.Errorf("include loop: %s -> %s", strings.Join(stack, " -> "), name)
		}
	}
	if len(stack) >= MaxIncludeDepth {
		return fmt.Errorf("includes nested more than %d deep at %s: %w", MaxIncludeDepth, name, ErrLimit)
	}
	if p.reads++; p.reads > MaxFiles {
		return fmt.Errorf("more than %d config files read (at %s): %w", MaxFiles, name, ErrLimit)
	}
	b, err := readFile(p.fsys, name)
	if err != nil {
		return err
	}
	stack = append(stack, name)
	inText := false
	for n, line := range strings.Split(string(b), "\n") {
		if p.restarted {
			return nil
		}
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		kw, arg := splitKeyword(line)
		if inText {
			if kw == "endtext" {
				inText = false
			}
			continue
		}
		if kw == "" || strings.HasPrefix(kw, "#") {
			continue
		}
		if kw == "menu" {
			sub, rest := splitKeyword(arg)
			if err := p.menuCmd(sub, rest, name, stack); err != nil {
				return fmt.Errorf("%s:%d: %w", name, n+1, err)
			}
			continue
		}
		if kw == "text" {
			inText = true
			continue
		}
		if err := p.cmd(kw, arg, name, stack); err != nil {
			return fmt.Errorf("%s:%d: %w", name, n+1, err)
		}
	}
	return nil
}

// splitKeyword returns the lower-cased first word and the rest, trimmed.
func splitKeyword(line string) (string, string) {
	i := strings.IndexAny(line, " \t")
	if i < 0 {
		return strings.ToLower(line), ""
	}
	return strings.ToLower(line[:i]), strings.TrimSpace(line[i+1:])
}

func (p *slParser) include(arg, from string, stack []string) error {
	f := strings.Fields(arg)
	if len(f) == 0 {
		return nil
	}
	// The name as stored, so that one file spelt in two cases is still one file to the
	// loop check.
	target, ok := Exists(p.fsys, p.resolve(f[0]))
	if !ok {
		// ISOLINUX skips a missing INCLUDE silently; Debian's netboot menu includes
		// several files that only its graphical flavour ships.
		p.menu.Notes = append(p.menu.Notes, fmt.Sprintf("%s: INCLUDE %s: no such file (skipped, as ISOLINUX does)", from, f[0]))
		return nil
	}
	return p.file(target, stack)
}

func (p *slParser) menuCmd(sub, arg, from string, stack []string) error {
	switch sub {
	case "label":
		if p.cur != nil {
			p.cur.Title = strings.ReplaceAll(arg, "^", "")
		}
	case "default":
		if p.cur != nil {
			p.cur.menuDefault = true
		}
	case "exit", "separator", "quit":
		if p.cur != nil {
			p.cur.skip = true
		}
	case "include":
		return p.include(arg, from, stack)
	case "begin":
		p.cur = nil
		name := arg
		if name == "" {
			name = fmt.Sprintf("submenu%d", len(p.submenus)+1)
		}
		p.submenus = append(p.submenus, name)
	case "end":
		p.cur = nil
		if len(p.submenus) > 0 {
			p.submenus = p.submenus[:len(p.submenus)-1]
		}
	}
	return nil
}

func (p *slParser) cmd(kw, arg, from string, stack []string) error {
	switch kw {
	case "include":
		return p.include(arg, from, stack)
	case "default":
		p.def = arg
	case "ui":
		p.ui = arg
	case "label":
		if len(p.labels) >= MaxEntries {
			return fmt.Errorf("more than %d labels: %w", MaxEntries, ErrLimit)
		}
		p.cur = &slLabel{Entry: Entry{Loader: ISOLINUX, Config: from, Label: arg, Menu: strings.Join(p.submenus, ">")}, cwd: p.cwd}
		p.labels = append(p.labels, p.cur)
	case "kernel", "linux", "boot", "bss", "pxe", "fdimage", "comboot", "com32":
		if p.cur != nil {
			p.cur.kernelKind, p.cur.kernelArg = kw, arg
		}
	case "config":
		if p.cur != nil {
			p.cur.kernelKind, p.cur.kernelArg = kw, arg
			return nil
		}
		// A global CONFIG restarts ISOLINUX with another file (and, optionally, another
		// working directory); nothing after it in the current file is read.
		f := strings.Fields(arg)
		if len(f) == 0 {
			return errors.New("CONFIG without a file")
		}
		target := strings.TrimPrefix(p.resolve(f[0]), "/")
		if name, ok := Exists(p.fsys, target); ok {
			target = name
		}
		if len(f) > 1 {
			p.cwd = strings.TrimPrefix(p.resolve(f[1]), "/")
		} else {
			p.cwd = path.Dir(target)
		}
		if err := p.file(target, stack); err != nil {
			return err
		}
		p.restarted = true
	case "append":
		if p.cur != nil {
			p.cur.appendSet = true
			p.cur.Cmdline = arg
		} else {
			p.appendAll = arg
		}
	case "initrd":
		if p.cur != nil {
			p.cur.Initrds = append(p.cur.Initrds, splitInitrds(arg)...)
		}
	}
	return nil
}

func splitInitrds(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// resolve makes a config path absolute against the working directory.
func (p *slParser) resolve(s string) string {
	if strings.HasPrefix(s, "/") {
		return path.Clean(s)
	}
	return path.Clean("/" + path.Join(p.cwd, s))
}

func isModule(s string) bool {
	ext := strings.ToLower(path.Ext(strings.Fields(s + " x")[0]))
	switch ext {
	case ".c32", ".com", ".cbt", ".bin", ".0", ".bs", ".bss", ".img":
		return true
	}
	return false
}

func (p *slParser) finish() {
	cwdResolve := func(cwd, s string) string {
		if strings.HasPrefix(s, "/") {
			return path.Clean(s)
		}
		return path.Clean("/" + path.Join(cwd, s))
	}
	var entries []Entry
	var menuDefaults []int
	labelIdx := map[string]int{}
	for _, l := range p.labels {
		if l.skip {
			continue
		}
		e := l.Entry
		if !l.appendSet {
			e.Cmdline = p.appendAll
		}
		if e.Cmdline == "-" {
			e.Cmdline = ""
		}
		switch k := l.kernelKind; {
		case k == "":
			e.Unresolved = append(e.Unresolved, "no KERNEL or LINUX line")
		case k == "linux" || (k == "kernel" && !isModule(l.kernelArg)):
			f := strings.Fields(l.kernelArg)
			if len(f) == 0 {
				e.Unresolved = append(e.Unresolved, strings.ToUpper(k)+" without a file")
				break
			}
			e.Kernel = cwdResolve(l.cwd, f[0])
			if len(f) > 1 {
				// KERNEL may carry arguments of its own, before APPEND's.
				e.Cmdline = strings.TrimSpace(strings.Join(f[1:], " ") + " " + e.Cmdline)
			}
		default:
			e.Unresolved = append(e.Unresolved, fmt.Sprintf("%s %s is not a Linux kernel", strings.ToUpper(k), l.kernelArg))
		}
		// initrd= in APPEND (or on the KERNEL line, whose arguments were merged above) is how most
		// menus name the initrd; QEMU's -initrd replaces it.
		var words []string
		for _, w := range strings.Fields(e.Cmdline) {
			if strings.HasPrefix(w, "initrd=") {
				e.Initrds = append(e.Initrds, splitInitrds(strings.TrimPrefix(w, "initrd="))...)
				continue
			}
			words = append(words, w)
		}
		e.Cmdline = strings.Join(words, " ")
		for i, r := range e.Initrds {
			e.Initrds[i] = cwdResolve(l.cwd, r)
		}
		if e.Kernel != "" {
			if _, ok := Exists(p.fsys, e.Kernel); !ok {
				e.Unresolved = append(e.Unresolved, "kernel "+e.Kernel+" is not on the ISO")
			}
		}
		for _, r := range e.Initrds {
			if _, ok := Exists(p.fsys, r); !ok {
				e.Unresolved = append(e.Unresolved, "initrd "+r+" is not on the ISO")
			}
		}
		if l.menuDefault && e.Menu == "" {
			menuDefaults = append(menuDefaults, len(entries))
		}
		if _, dup := labelIdx[e.Label]; !dup {
			labelIdx[e.Label] = len(entries)
		}
		entries = append(entries, e)
	}
	// Which entry boots when nobody touches the keyboard: the top-level MENU DEFAULT,
	// else the label DEFAULT names, else (a menu UI) the first top-level entry.
	def := -1
	defWord := strings.Fields(p.def)
	defLabel, defIsLabel := -1, false
	if len(defWord) > 0 {
		defLabel, defIsLabel = labelIdx[defWord[0]]
	}
	switch {
	case len(menuDefaults) > 0:
		def = menuDefaults[0]
	case defIsLabel:
		def = defLabel
	case p.ui != "" || (len(defWord) > 0 && isModule(defWord[0])):
		for i, e := range entries {
			if e.Menu == "" {
				def = i
				break
			}
		}
	case len(defWord) > 0:
		// DEFAULT is a kernel command line of its own, not a label.
		e := Entry{Loader: ISOLINUX, Config: p.menu.Config, Label: "DEFAULT", Kernel: p.resolve(defWord[0]), Cmdline: strings.Join(strings.Fields(p.def)[1:], " ")}
		if _, ok := Exists(p.fsys, e.Kernel); !ok {
			e.Unresolved = append(e.Unresolved, "kernel "+e.Kernel+" is not on the ISO")
		}
		entries = append(entries, e)
		def = len(entries) - 1
	case len(entries) > 0:
		def = 0
	}
	if def >= 0 {
		entries[def].Default = true
	}
	p.menu.Entries = entries
}
