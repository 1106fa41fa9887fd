package bisect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/bootlab/bootlab/artifacts/debversion"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
)

// Candidate is one bootable image in the ordered list being bisected: either
// an ISO or a kernel+initrd(+append) triple. Name is what every report and
// log line calls it.
type Candidate struct {
	Name   string `json:"name"`
	ISO    string `json:"iso,omitempty"`
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	Append string `json:"append,omitempty"`
	// Entry and Boot choose, for an ISO, the boot menu entry and how it boots
	// (direct, firmware or auto), as `bootlab run --entry/--boot` do.
	Entry string `json:"entry,omitempty"`
	Boot  string `json:"boot,omitempty"`
	// Profile names the image profile the candidate is booted and judged with
	// (mini, fixture, nixos: how it logs in, what the scenarios check), for a
	// list whose images are not all of the prober's default kind.
	Profile string `json:"profile,omitempty"`
	// URL and SHA256: an ISO downloaded only when it is first probed (Fetch),
	// into the download cache by its digest, and verified before it boots.
	URL    string `json:"url,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

var (
	sha256Hex   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	profileName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

func (c Candidate) validate() error {
	if c.Name == "" {
		return fmt.Errorf("candidate without a name")
	}
	switch {
	case c.URL != "" && (c.ISO != "" || c.Kernel != "" || c.Initrd != ""):
		return fmt.Errorf("candidate %q: url= names an ISO to download; it excludes iso=, kernel= and initrd=", c.Name)
	case c.URL != "" && !sha256Hex.MatchString(c.SHA256):
		return fmt.Errorf("candidate %q: url= needs sha256=<64 hex digits>, the digest the download must have", c.Name)
	case c.URL == "" && c.SHA256 != "":
		return fmt.Errorf("candidate %q: sha256= only applies to url= candidates", c.Name)
	case c.URL != "" && !strings.HasPrefix(c.URL, "https://") && !strings.HasPrefix(c.URL, "http://"):
		return fmt.Errorf("candidate %q: url=%s: want an http(s) URL", c.Name, c.URL)
	case c.Profile != "" && !profileName.MatchString(c.Profile):
		return fmt.Errorf("candidate %q: profile=%q is not a profile name", c.Name, c.Profile)
	case c.ISO != "" && (c.Kernel != "" || c.Initrd != ""):
		return fmt.Errorf("candidate %q: iso= and kernel=/initrd= are exclusive", c.Name)
	case c.ISO == "" && c.Kernel == "" && c.URL == "":
		return fmt.Errorf("candidate %q: needs iso=, url= or kernel=", c.Name)
	case (c.ISO != "" || c.URL != "") && c.Append != "":
		return fmt.Errorf("candidate %q: append= only applies to kernel= candidates (an ISO boots its own command line)", c.Name)
	case c.ISO == "" && c.URL == "" && (c.Entry != "" || c.Boot != ""):
		return fmt.Errorf("candidate %q: entry= and boot= only apply to iso= candidates", c.Name)
	}
	switch c.Boot {
	case "", "auto", "direct", "firmware":
	default:
		return fmt.Errorf("candidate %q: boot=%s: want direct, firmware or auto", c.Name, c.Boot)
	}
	return nil
}

// ParseCandidates reads the list-file format documented in docs/bisect.md:
//
//	# comment
//	name iso=PATH [entry=LABEL] [boot=direct|firmware|auto] [profile=NAME]
//	name url=URL sha256=HEX [entry=LABEL] [boot=MODE] [profile=NAME]
//	name kernel=PATH initrd=PATH append="console=ttyS0 quiet" [profile=NAME]
//
// Values may be double-quoted Go strings. Relative paths are resolved against
// baseDir so a list file can sit next to its images.
func ParseCandidates(r io.Reader, baseDir string) ([]Candidate, error) {
	var out []Candidate
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c, err := parseCandidateLine(line, baseDir)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if prev, dup := seen[c.Name]; dup {
			return nil, fmt.Errorf("line %d: candidate %q already defined on line %d", lineNo, c.Name, prev)
		}
		seen[c.Name] = lineNo
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading candidate list: %w", err)
	}
	return out, nil
}

// LoadCandidates reads a list file (see ParseCandidates).
func LoadCandidates(path string) ([]Candidate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening candidate list: %w", err)
	}
	defer f.Close()
	cs, err := ParseCandidates(f, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("candidate list %s: %w", path, err)
	}
	return cs, nil
}

// CandidatesFromArgs turns command-line arguments into candidates. An
// argument containing '=' is one list-file line (quote it in the shell);
// anything else is an ISO path named after its file name.
func CandidatesFromArgs(args []string) ([]Candidate, error) {
	var out []Candidate
	seen := map[string]bool{}
	for i, a := range args {
		var c Candidate
		if strings.Contains(a, "=") {
			var err error
			if c, err = parseCandidateLine(a, ""); err != nil {
				return nil, fmt.Errorf("argument %d: %w", i+1, err)
			}
		} else {
			c = Candidate{Name: strings.TrimSuffix(filepath.Base(a), ".iso"), ISO: a}
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("argument %d: candidate %q given twice", i+1, c.Name)
		}
		seen[c.Name] = true
		out = append(out, c)
	}
	return out, nil
}

func parseCandidateLine(line, baseDir string) (Candidate, error) {
	fields, err := splitFields(line)
	if err != nil {
		return Candidate{}, err
	}
	if len(fields) < 2 {
		return Candidate{}, fmt.Errorf("%q: want `name iso=PATH [entry=LABEL] [boot=MODE]` or `name kernel=PATH [initrd=PATH] [append=...]`", line)
	}
	c := Candidate{Name: fields[0]}
	if strings.Contains(c.Name, "=") {
		return Candidate{}, fmt.Errorf("%q: the first field is the candidate name and must not contain '='", line)
	}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Candidate{}, fmt.Errorf("candidate %q: field %q is not key=value", c.Name, f)
		}
		if strings.HasPrefix(v, `"`) {
			uq, err := strconv.Unquote(v)
			if err != nil {
				return Candidate{}, fmt.Errorf("candidate %q: bad quoting in %s: %w", c.Name, k, err)
			}
			v = uq
		}
		switch k {
		case "iso":
			c.ISO = resolve(baseDir, v)
		case "kernel":
			c.Kernel = resolve(baseDir, v)
		case "initrd":
			c.Initrd = resolve(baseDir, v)
		case "append":
			c.Append = v
		case "entry":
			c.Entry = v
		case "boot":
			c.Boot = v
		case "profile":
			c.Profile = v
		case "url":
			c.URL = v
		case "sha256":
			c.SHA256 = strings.ToLower(v)
		default:
			return Candidate{}, fmt.Errorf("candidate %q: unknown key %q (want iso, url, sha256, entry, boot, profile, kernel, initrd, append)", c.Name, k)
		}
	}
	if err := c.validate(); err != nil {
		return Candidate{}, err
	}
	return c, nil
}

func resolve(baseDir, p string) string {
	if baseDir == "" || p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(baseDir, p)
}

// splitFields splits on white space but keeps double-quoted runs (Go
// syntax, so `\"` works) inside one field: append="a b" stays whole.
func splitFields(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inField, inQuote, esc := false, false, false
	for _, r := range s {
		switch {
		case inQuote:
			cur.WriteRune(r)
			switch {
			case esc:
				esc = false
			case r == '\\':
				esc = true
			case r == '"':
				inQuote = false
			}
		case r == '"':
			inQuote, inField = true, true
			cur.WriteRune(r)
		case unicode.IsSpace(r):
			if inField {
				out = append(out, cur.String())
				cur.Reset()
				inField = false
			}
		default:
			inField = true
			cur.WriteRune(r)
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inField {
		out = append(out, cur.String())
	}
	return out, nil
}

// LoadCandidatesDir builds the list from a directory and orders it by Debian
// version. Entries it understands:
//
//   - NAME.iso: an ISO; the version is the name from its first digit after a
//     '-' or '_' (debian-live-12.5.0-amd64.iso -> 12.5.0-amd64).
//   - vmlinuz-VERSION with an optional initrd.img-VERSION next to it: the
//     layout of /boot and of unpacked linux-image .debs.
//   - a subdirectory named VERSION holding one *.iso, or a vmlinuz/bzImage
//     and an optional initrd* plus an optional `append` file: the layout for
//     synthetic series built by a script.
//
// appendLine is used for kernel candidates that bring no `append` file.
func LoadCandidatesDir(dir, appendLine string) ([]Candidate, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading candidate directory: %w", err)
	}
	type versioned struct {
		version string
		c       Candidate
	}
	var vs []versioned
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case e.IsDir():
			c, ok, err := candidateFromSubdir(p, name, appendLine)
			if err != nil {
				return nil, err
			}
			if ok {
				vs = append(vs, versioned{name, c})
			}
		case strings.HasSuffix(name, ".iso"):
			base := strings.TrimSuffix(name, ".iso")
			vs = append(vs, versioned{versionFromName(base), Candidate{Name: base, ISO: p}})
		case strings.HasPrefix(name, "vmlinuz-"):
			ver := strings.TrimPrefix(name, "vmlinuz-")
			c := Candidate{Name: ver, Kernel: p, Append: appendLine}
			if ird := filepath.Join(dir, "initrd.img-"+ver); fileExists(ird) {
				c.Initrd = ird
			}
			vs = append(vs, versioned{ver, c})
		}
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("candidate directory %s: no *.iso, vmlinuz-VERSION or VERSION/ entries", dir)
	}
	sort.SliceStable(vs, func(i, j int) bool {
		if c := debversion.Compare(vs[i].version, vs[j].version); c != 0 {
			return c < 0
		}
		return vs[i].c.Name < vs[j].c.Name
	})
	out := make([]Candidate, len(vs))
	seen := map[string]bool{}
	for i, v := range vs {
		if seen[v.c.Name] {
			return nil, fmt.Errorf("candidate directory %s: two entries named %q", dir, v.c.Name)
		}
		seen[v.c.Name] = true
		out[i] = v.c
	}
	return out, nil
}

func candidateFromSubdir(p, name, appendLine string) (Candidate, bool, error) {
	entries, err := os.ReadDir(p)
	if err != nil {
		return Candidate{}, false, fmt.Errorf("reading candidate %s: %w", p, err)
	}
	c := Candidate{Name: name}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() {
			continue
		}
		switch {
		case strings.HasSuffix(n, ".iso"):
			if c.ISO != "" {
				return Candidate{}, false, fmt.Errorf("candidate %s: more than one ISO", p)
			}
			c.ISO = filepath.Join(p, n)
		case n == "vmlinuz" || n == "bzImage" || strings.HasPrefix(n, "vmlinuz-"):
			c.Kernel = filepath.Join(p, n)
		case strings.HasPrefix(n, "initrd"):
			c.Initrd = filepath.Join(p, n)
		}
	}
	if c.ISO == "" && c.Kernel == "" {
		return Candidate{}, false, nil
	}
	if c.Kernel != "" {
		c.Append = appendLine
		if b, err := os.ReadFile(filepath.Join(p, "append")); err == nil {
			c.Append = strings.TrimSpace(string(b))
		}
	}
	if err := c.validate(); err != nil {
		return Candidate{}, false, err
	}
	return c, true, nil
}

func versionFromName(base string) string {
	for i := 1; i < len(base); i++ {
		if (base[i-1] == '-' || base[i-1] == '_') && isDigit(base[i]) {
			return base[i:]
		}
	}
	return base
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// CheckISOs reads every ISO candidate through the bounded ISO reader (isoinspect)
// before anything is probed, so that a hostile image (sizes past its end, loops in
// its descriptors, path table or directories) ends the bisection with one line before
// its directory exists, instead of in a probe. A missing file is left to the probe
// (its skip names it), and so is a file that is not ISO9660 at all, which the
// firmware may still boot.
func CheckISOs(ctx context.Context, cands []Candidate) error {
	for _, c := range cands {
		if c.ISO == "" || !fileExists(c.ISO) {
			continue
		}
		iso, err := isoinspect.OpenISO(ctx, c.ISO)
		if err != nil {
			if errors.Is(err, isoinspect.ErrHostile) || ctx.Err() != nil {
				return fmt.Errorf("candidate %s: %w", c.Name, err)
			}
			continue
		}
		iso.Close()
	}
	return nil
}
