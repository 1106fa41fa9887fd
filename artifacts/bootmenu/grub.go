package bootmenu

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A GRUB script is lexed into commands of words; a word is a list of segments, each
// literal text or a variable reference, expanded when the command runs (a `set` earlier
// in the file changes what a later word means).
type gSeg struct {
	text  string
	isVar bool
}

type gWord struct {
	segs   []gSeg
	quoted bool
}

type gCmd struct {
	words []gWord
	line  int
}

var gVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// lexGRUB splits a GRUB script into commands. Unquoted `{` and `}` words are commands
// of their own, so a menuentry's body can be on the header's line or not.
func lexGRUB(src string) ([]gCmd, error) {
	var cmds []gCmd
	var cur gCmd
	var w gWord
	inWord := false
	line := 1
	lit := func(s string) {
		if n := len(w.segs); n > 0 && !w.segs[n-1].isVar {
			w.segs[n-1].text += s
		} else {
			w.segs = append(w.segs, gSeg{text: s})
		}
		inWord = true
	}
	endWord := func() {
		if inWord {
			cur.words = append(cur.words, w)
		}
		w, inWord = gWord{}, false
	}
	endCmd := func() {
		endWord()
		if len(cur.words) > 0 {
			cmds = append(cmds, cur)
		}
		cur = gCmd{line: line}
	}
	cur.line = line
	// readVar reads a $name, ${name} or $1 reference at src[i] == '$'.
	readVar := func(i int) (int, bool) {
		if i+1 >= len(src) {
			return i, false
		}
		if src[i+1] == '{' {
			end := strings.IndexByte(src[i+2:], '}')
			if end < 0 {
				return i, false
			}
			w.segs = append(w.segs, gSeg{text: src[i+2 : i+2+end], isVar: true})
			inWord = true
			return i + 2 + end + 1, true
		}
		j := i + 1
		for j < len(src) && (src[j] == '_' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9' || src[j] == '?' || src[j] == '#') {
			j++
			if src[j-1] == '?' || src[j-1] == '#' {
				break
			}
		}
		if j == i+1 {
			return i, false
		}
		w.segs = append(w.segs, gSeg{text: src[i+1 : j], isVar: true})
		inWord = true
		return j, true
	}
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			endCmd()
			line++
			cur.line = line
			i++
		case c == ';':
			endCmd()
			i++
		case c == ' ' || c == '\t' || c == '\r':
			endWord()
			i++
		case c == '#' && !inWord:
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '\\':
			if i+1 < len(src) {
				if src[i+1] == '\n' {
					line++
				} else {
					lit(string(src[i+1]))
				}
				i += 2
			} else {
				i++
			}
		case c == '\'':
			end := strings.IndexByte(src[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("line %d: unterminated single quote", line)
			}
			lit(src[i+1 : i+1+end])
			line += strings.Count(src[i+1:i+1+end], "\n")
			w.quoted = true
			i += end + 2
		case c == '"':
			i++
			w.quoted = true
			inWord = true
			closed := false
			for i < len(src) {
				d := src[i]
				if d == '"' {
					closed = true
					i++
					break
				}
				if d == '\\' && i+1 < len(src) && strings.IndexByte("$\"\\\n", src[i+1]) >= 0 {
					if src[i+1] != '\n' {
						lit(string(src[i+1]))
					}
					i += 2
					continue
				}
				if d == '$' {
					if j, ok := readVar(i); ok {
						i = j
						continue
					}
				}
				if d == '\n' {
					line++
				}
				lit(string(d))
				i++
			}
			if !closed {
				return nil, fmt.Errorf("line %d: unterminated double quote", line)
			}
		case c == '$':
			if j, ok := readVar(i); ok {
				i = j
			} else {
				lit("$")
				i++
			}
		case (c == '{' || c == '}') && !inWord && (i+1 >= len(src) || strings.IndexByte(" \t\r\n;", src[i+1]) >= 0):
			endCmd()
			cur.words = []gWord{{segs: []gSeg{{text: string(c)}}}}
			endCmd()
			i++
		default:
			lit(string(c))
			i++
		}
	}
	endCmd()
	return cmds, nil
}

// ParseGRUB parses a GRUB config (cfg, slash-separated from the ISO root) and the files
// it sources.
func ParseGRUB(fsys fs.FS, cfg string) (*Menu, error) {
	cfg = strings.TrimPrefix(path.Clean("/"+cfg), "/")
	p := &gParser{fsys: fsys, menu: &Menu{Loader: GRUB, Config: cfg},
		// What GRUB itself sets before reading grub.cfg, as far as it matters here.
		vars: map[string]string{"menuentry_id_option": "--id", "grub_cpu": "x86_64"}, taint: map[string][]string{}}
	if err := p.file(cfg, nil); err != nil {
		return nil, fmt.Errorf("reading the GRUB menu %s: %w", cfg, err)
	}
	p.finish()
	return p.menu, nil
}

type gBlock struct {
	kind  string // menuentry, submenu, function, other
	entry *gEntry
	title string
}

type gEntry struct {
	Entry
	id    string
	item  int // index of the top-level item it belongs to
	local map[string]string
}

type gParser struct {
	fsys    fs.FS
	menu    *Menu
	vars    map[string]string
	entries []*gEntry
	blocks  []gBlock
	header  *gCmd // the command before a `{`
	items   []string
	itemIDs []string
	reads   int
	// taint lists, per variable, the unknown variables its value was built from.
	taint map[string][]string
	// ifDepth counts the if (and loop) blocks the current command is in.
	ifDepth int
}

func (p *gParser) file(name string, stack []string) error {
	for _, s := range stack {
		if s == name {
			return fmt.Errorf("source loop: %s -> %s", strings.Join(stack, " -> "), name)
		}
	}
	if len(stack) >= MaxIncludeDepth {
		return fmt.Errorf("source nested more than %d deep at %s: %w", MaxIncludeDepth, name, ErrLimit)
	}
	if p.reads++; p.reads > MaxFiles {
		return fmt.Errorf("more than %d config files read (at %s): %w", MaxFiles, name, ErrLimit)
	}
	b, err := readFile(p.fsys, name)
	if err != nil {
		return err
	}
	cmds, err := lexGRUB(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	stack = append(stack, name)
	for i := range cmds {
		if err := p.run(&cmds[i], name, stack); err != nil {
			return fmt.Errorf("%s:%d: %w", name, cmds[i].line, err)
		}
	}
	return nil
}

// expand gives a word's value, with GRUB's rule that an unset variable is empty, and
// the variables whose value is not known here: unset ones (an ISO's loopback.cfg
// expects $iso_path from the GRUB that loops it) and ones set from those.
func (p *gParser) expand(w gWord, local map[string]string) (string, []string) {
	var sb strings.Builder
	var missing []string
	for _, s := range w.segs {
		if !s.isVar {
			sb.WriteString(s.text)
			continue
		}
		if v, ok := local[s.text]; ok {
			sb.WriteString(v)
		} else if v, ok := p.vars[s.text]; ok {
			sb.WriteString(v)
			missing = append(missing, p.taint[s.text]...)
		} else {
			missing = append(missing, "$"+s.text)
		}
	}
	return sb.String(), missing
}

func (p *gParser) inBlock(kind string) *gBlock {
	for i := len(p.blocks) - 1; i >= 0; i-- {
		if p.blocks[i].kind == kind {
			return &p.blocks[i]
		}
	}
	return nil
}

func (p *gParser) run(c *gCmd, file string, stack []string) error {
	var entry *gEntry
	if b := p.inBlock("menuentry"); b != nil {
		entry = b.entry
	}
	if p.inBlock("function") != nil {
		// A function body runs only when called; nothing in it is a menu.
		switch first := c.words[0]; {
		case len(c.words) == 1 && !first.quoted && len(first.segs) == 1 && first.segs[0].text == "{":
			p.blocks = append(p.blocks, gBlock{kind: "other"})
		case len(c.words) == 1 && !first.quoted && len(first.segs) == 1 && first.segs[0].text == "}":
			p.blocks = p.blocks[:len(p.blocks)-1]
		}
		return nil
	}
	var local map[string]string
	if entry != nil {
		local = entry.local
	}
	words := make([]string, len(c.words))
	var missing []string
	for i, w := range c.words {
		var m []string
		words[i], m = p.expand(w, local)
		missing = append(missing, m...)
	}
	raw := len(c.words) == 1 && !c.words[0].quoted
	switch {
	case raw && words[0] == "{":
		return p.open(c)
	case raw && words[0] == "}":
		if len(p.blocks) == 0 {
			return fmt.Errorf("`}` without a block to close")
		}
		p.blocks = p.blocks[:len(p.blocks)-1]
		return nil
	}
	p.header = c
	// GRUB's if/then/else/fi are not evaluated (their conditions test the firmware and
	// the environment); both branches are read, which is how a menu lists entries for
	// BIOS and EFI alike. A keyword that starts a line's command is dropped.
	for len(words) > 0 && (words[0] == "then" || words[0] == "else" || words[0] == "do") && !c.words[0].quoted {
		words = words[1:]
	}
	if len(words) == 0 {
		return nil
	}
	cmd := words[0]
	args := words[1:]
	switch cmd {
	case "if", "while", "until":
		p.ifDepth++
		return nil
	case "fi", "done":
		if p.ifDepth > 0 {
			p.ifDepth--
		}
		return nil
	case "elif", "for":
		return nil
	case "menuentry", "submenu":
		// The `{` follows; open() reads this header.
		return nil
	case "function":
		return nil
	case "set":
		for _, a := range args {
			if k, v, ok := strings.Cut(a, "="); ok && gVarName.MatchString(k) {
				p.assign(entry, k, v, missing)
			}
		}
		return nil
	case "linux", "linuxefi", "linux16":
		if entry == nil {
			return nil
		}
		if len(args) == 0 {
			entry.Unresolved = append(entry.Unresolved, cmd+" without a kernel")
			return nil
		}
		entry.Kernel = isoPath(args[0], &entry.Entry)
		entry.Cmdline = strings.Join(strings.Fields(strings.Join(args[1:], " ")), " ")
		if cmd == "linux16" {
			entry.Unresolved = append(entry.Unresolved, "linux16 loads a 16-bit image (memtest, not Linux)")
		}
		_, inPath := p.expand(c.words[1], local)
		for _, m := range inPath {
			entry.Unresolved = append(entry.Unresolved, "the kernel path uses "+m+", which has no value here")
		}
		for _, m := range missing {
			if !slices.Contains(inPath, m) {
				entry.Assumed = appendNew(entry.Assumed, m+" has no value here; GRUB would expand it to nothing")
			}
		}
	case "initrd", "initrdefi", "initrd16":
		if entry == nil {
			return nil
		}
		for _, a := range args {
			entry.Initrds = append(entry.Initrds, isoPath(a, &entry.Entry))
		}
		for _, m := range missing {
			entry.Unresolved = appendNew(entry.Unresolved, "the initrd path uses "+m+", which has no value here")
		}
	case "source", "configfile":
		if entry != nil || len(args) == 0 {
			return nil
		}
		if len(missing) > 0 {
			p.menu.Notes = append(p.menu.Notes, fmt.Sprintf("%s: %s %s: %s not set, not followed", file, cmd, args[0], strings.Join(missing, ", ")))
			return nil
		}
		target, ok := Exists(p.fsys, stripDevice(args[0]))
		if !ok {
			p.menu.Notes = append(p.menu.Notes, fmt.Sprintf("%s: %s %s: no such file", file, cmd, args[0]))
			return nil
		}
		return p.file(target, stack)
	default:
		if k, v, ok := strings.Cut(cmd, "="); ok && gVarName.MatchString(k) && len(args) == 0 {
			p.assign(entry, k, v, missing)
		}
	}
	return nil
}

func (p *gParser) assign(entry *gEntry, k, v string, missing []string) {
	if entry != nil {
		entry.local[k] = v
		return
	}
	if len(missing) > 0 && p.ifDepth > 0 {
		// `if [ $iso_path ]; then set isoboot="findiso=$iso_path"; fi`: the condition
		// tests what is unknown here, so the assignment is taken not to happen.
		return
	}
	p.vars[k] = v
	if len(missing) > 0 {
		p.taint[k] = missing
	} else {
		delete(p.taint, k)
	}
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func (p *gParser) open(c *gCmd) error {
	h := p.header
	p.header = nil
	if len(p.blocks) > 64 {
		return fmt.Errorf("blocks nested more than 64 deep: %w", ErrLimit)
	}
	if h == nil || len(h.words) == 0 {
		p.blocks = append(p.blocks, gBlock{kind: "other"})
		return nil
	}
	var local map[string]string
	if b := p.inBlock("menuentry"); b != nil {
		local = b.entry.local
	}
	words := make([]string, len(h.words))
	for i, w := range h.words {
		words[i], _ = p.expand(w, local)
	}
	switch words[0] {
	case "function":
		p.blocks = append(p.blocks, gBlock{kind: "function"})
		return nil
	case "menuentry", "submenu":
	default:
		p.blocks = append(p.blocks, gBlock{kind: "other"})
		return nil
	}
	title, id := "", ""
	for i := 1; i < len(words); i++ {
		switch words[i] {
		case "--class", "--users", "--hotkey", "--source":
			i++
		case "--id":
			if i+1 < len(words) {
				id = words[i+1]
			}
			i++
		default:
			if strings.HasPrefix(words[i], "--") {
				continue
			}
			if title == "" {
				title = words[i]
			}
		}
	}
	var menuPath []string
	for _, b := range p.blocks {
		if b.kind == "submenu" {
			menuPath = append(menuPath, b.title)
		}
	}
	item := len(p.items)
	if len(menuPath) == 0 {
		p.items = append(p.items, title)
		p.itemIDs = append(p.itemIDs, id)
	} else {
		item = -1
		for _, b := range p.blocks {
			if b.kind == "submenu" && b.entry != nil {
				item = b.entry.item
				break
			}
		}
	}
	if words[0] == "submenu" {
		p.blocks = append(p.blocks, gBlock{kind: "submenu", title: title, entry: &gEntry{item: item}})
		return nil
	}
	if len(p.entries) >= MaxEntries {
		return fmt.Errorf("more than %d menu entries: %w", MaxEntries, ErrLimit)
	}
	e := &gEntry{Entry: Entry{Loader: GRUB, Config: p.menu.Config, Label: title, Menu: strings.Join(menuPath, ">")}, id: id, item: item, local: map[string]string{}}
	p.entries = append(p.entries, e)
	p.blocks = append(p.blocks, gBlock{kind: "menuentry", entry: e, title: title})
	return nil
}

// stripDevice removes a GRUB device prefix: "(cd0)/boot/x" and "($root)/x" name files
// on the device GRUB booted from, which is the ISO here.
func stripDevice(s string) string {
	if strings.HasPrefix(s, "(") {
		if i := strings.IndexByte(s, ')'); i >= 0 {
			return s[i+1:]
		}
	}
	return s
}

func isoPath(s string, e *Entry) string {
	s = stripDevice(s)
	if !strings.HasPrefix(s, "/") {
		e.Unresolved = append(e.Unresolved, fmt.Sprintf("%q is not an absolute path", s))
		return s
	}
	return path.Clean(s)
}

func (p *gParser) finish() {
	if len(p.blocks) > 0 {
		p.menu.Notes = append(p.menu.Notes, fmt.Sprintf("%d block(s) not closed at the end of the config", len(p.blocks)))
	}
	var entries []Entry
	for _, g := range p.entries {
		e := g.Entry
		if e.Kernel == "" && len(e.Unresolved) == 0 {
			e.Unresolved = append(e.Unresolved, "no linux command")
		}
		if e.Kernel != "" && strings.HasPrefix(e.Kernel, "/") {
			if _, ok := Exists(p.fsys, e.Kernel); !ok {
				e.Unresolved = append(e.Unresolved, "kernel "+e.Kernel+" is not on the ISO")
			}
		}
		for _, r := range e.Initrds {
			if _, ok := Exists(p.fsys, r); strings.HasPrefix(r, "/") && !ok {
				e.Unresolved = append(e.Unresolved, "initrd "+r+" is not on the ISO")
			}
		}
		entries = append(entries, e)
	}
	// GRUB's default: an item number, a title or an id; unset means 0; anything GRUB
	// cannot match falls back to 0 too.
	item := 0
	if d, ok := p.vars["default"]; ok && d != "" {
		if n, err := strconv.Atoi(d); err == nil {
			item = n
		} else {
			item = -1
			for i := range p.items {
				if p.items[i] == d || (p.itemIDs[i] != "" && p.itemIDs[i] == d) {
					item = i
					break
				}
			}
			if item < 0 {
				p.menu.Notes = append(p.menu.Notes, fmt.Sprintf("default %q names no top-level entry; GRUB falls back to the first", d))
				item = 0
			}
		}
	}
	if t := p.taint["default"]; len(t) > 0 {
		p.menu.Notes = append(p.menu.Notes, fmt.Sprintf("default is set from %s, which has no known value here; assuming the first entry", strings.Join(t, ", ")))
	}
	for i, g := range p.entries {
		if g.item == item && g.Menu == "" {
			entries[i].Default = true
			break
		}
	}
	if item >= 0 && item < len(p.items) {
		found := false
		for _, e := range entries {
			found = found || e.Default
		}
		if !found {
			p.menu.Notes = append(p.menu.Notes, fmt.Sprintf("the default item %d (%q) is a submenu", item, p.items[item]))
		}
	}
	p.menu.Entries = entries
}
