// Package cacheprune lists and prunes bootlab's image cache ($BOOTLAB_CACHE): built
// images (fixture ISOs and bases, mini images), Debian packages and kernels, saved warm
// guest states, kernels and initrds extracted from ISOs for direct boots, and ISOs
// downloaded for bisection. The builders already keep their own kinds to a count;
// warm states (~280 MiB each), extracts and downloads had no bound, and all of it
// rides in CI's Actions cache. Prune removes what was not used for a number of days,
// or the least recently used down to a size, and never an entry in use.
//
// Last use is the newest modification time in the entry: the code that uses an entry
// touches it (images.touchAndPrune for built images, and the warm-state, extract,
// package, kernel and download caches on a hit), and modification times survive the
// Actions cache's tar, where access times would not. An entry is in use, and kept
// whatever the policy, while its builder's lock is held, while a process has one of its
// files open (a QEMU booting that ISO), or when it was used within InUseWindow (a run
// that read it at its start and is still going).
package cacheprune

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// InUseWindow is how recently an entry may have been used and still be removed: longer
// than any one run (CI's longest job is 3 hours), so a run that read an entry when it
// started never loses it midway.
const InUseWindow = 6 * time.Hour

// Kinds of cache entries.
const (
	KindFixtureISO  = "fixture-iso"
	KindFixtureBase = "fixture-base"
	KindMini        = "mini"
	KindDeb         = "deb"
	KindKernel      = "kernel"
	KindNetboot     = "netboot-tree" // the Debian installer's netboot files, unpacked
	KindWarmState   = "warm-state"
	KindExtract     = "direct-extract"
	KindDownloadISO = "downloaded-iso"
	KindKept        = "kept" // keys, probe verdicts, test durations, ISO digests: small, never pruned
	KindOther       = "other"
)

// DownloadDir is where downloaded ISOs live under a cache root, by their sha256.
func DownloadDir(root string) string { return filepath.Join(root, "isos") }

// Entry is one removable unit of the cache.
type Entry struct {
	Kind    string    `json:"kind"`
	Path    string    `json:"path"`
	Extra   []string  `json:"extra,omitempty"` // side files removed with it (a warm state's .json)
	Size    int64     `json:"size"`
	LastUse time.Time `json:"last_use"`
	// InUse says why the entry may not be removed now ("" when it may).
	InUse string `json:"in_use,omitempty"`
	lock  string
}

// Prunable says whether any policy may remove e.
func (e Entry) Prunable() bool { return e.Kind != KindKept && e.Kind != KindOther && e.InUse == "" }

// Scan lists root's entries, newest use first. A missing root is an empty cache.
func Scan(root string, now time.Time) ([]Entry, error) {
	var es []Entry
	top, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the cache %s: %w", root, err)
	}
	open := openFiles()
	for _, t := range top {
		p := filepath.Join(root, t.Name())
		var sub []Entry
		switch t.Name() {
		case "fixture":
			sub, err = scanDirs(p, func(n string) string {
				switch {
				case strings.HasPrefix(n, "iso-"):
					return KindFixtureISO
				case strings.HasPrefix(n, "base-"):
					return KindFixtureBase
				}
				return KindOther
			})
		case "mini":
			sub, err = scanDirs(p, func(string) string { return KindMini })
		case "kernels":
			sub, err = scanDirs(p, func(string) string { return KindKernel })
		case "netboot-tree":
			sub, err = scanDirs(p, func(string) string { return KindNetboot })
		case "direct":
			sub, err = scanDirs(p, func(n string) string {
				if n == "sums" {
					return KindKept // ISO digests by path and mtime: small, saves rehashing
				}
				return KindExtract
			})
		case "debs":
			sub, err = scanFiles(p, ".deb", KindDeb)
		case "isos":
			sub, err = scanFiles(p, ".iso", KindDownloadISO)
		case "warm-states":
			sub, err = scanWarm(p)
		default:
			var e Entry
			e, err = entryOf(p, KindKept)
			if t.Name() != "keys" && !strings.HasSuffix(t.Name(), ".json") && t.Name() != "test-durations" {
				e.Kind = KindOther
			}
			sub = []Entry{e}
		}
		if err != nil {
			return nil, err
		}
		es = append(es, sub...)
	}
	for i := range es {
		es[i].InUse = inUse(es[i], open, now)
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].LastUse.After(es[j].LastUse) })
	return es, nil
}

// scanDirs makes one entry of each directory in dir; dot-names are builders' locks and
// temporary directories (a temporary directory is a build in progress: in use).
func scanDirs(dir string, kind func(name string) string) ([]Entry, error) {
	ds, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var es []Entry
	for _, d := range ds {
		n := d.Name()
		p := filepath.Join(dir, n)
		if strings.HasPrefix(n, ".") {
			if d.IsDir() && strings.HasPrefix(n, ".tmp-") {
				e, err := entryOf(p, kind(strings.TrimPrefix(n, ".tmp-")))
				if err != nil {
					return nil, err
				}
				e.InUse = "a build in progress"
				es = append(es, e)
			}
			continue
		}
		e, err := entryOf(p, kind(n))
		if err != nil {
			return nil, err
		}
		e.lock = filepath.Join(dir, "."+n+".lock")
		es = append(es, e)
	}
	return es, nil
}

// scanFiles makes one entry of each file in dir ending in ext.
func scanFiles(dir, ext, kind string) ([]Entry, error) {
	ds, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var es []Entry
	for _, d := range ds {
		n := d.Name()
		if d.IsDir() || strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ext) {
			continue
		}
		e, err := entryOf(filepath.Join(dir, n), kind)
		if err != nil {
			return nil, err
		}
		e.lock = filepath.Join(dir, "."+n+".lock")
		es = append(es, e)
	}
	return es, nil
}

// scanWarm pairs each saved state with its side file (.state.json).
func scanWarm(dir string) ([]Entry, error) {
	es, err := scanFiles(dir, ".state", KindWarmState)
	if err != nil {
		return nil, err
	}
	for i := range es {
		side := es[i].Path + ".json"
		if st, err := os.Stat(side); err == nil {
			es[i].Extra = []string{side}
			es[i].Size += st.Size()
		}
	}
	return es, nil
}

// entryOf measures path (a file or a tree): its size and newest modification time.
func entryOf(path, kind string) (Entry, error) {
	e := Entry{Kind: kind, Path: path}
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we looked
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if info.Mode().IsRegular() {
			e.Size += info.Size()
		}
		if info.ModTime().After(e.LastUse) {
			e.LastUse = info.ModTime()
		}
		return nil
	})
	if err != nil {
		return e, fmt.Errorf("measuring %s: %w", path, err)
	}
	return e, nil
}

// inUse says why e is in use now, or "".
func inUse(e Entry, open []string, now time.Time) string {
	if e.InUse != "" {
		return e.InUse
	}
	if e.lock != "" && lockHeld(e.lock) {
		return "its builder holds the lock"
	}
	for _, o := range open {
		if o == e.Path || strings.HasPrefix(o, e.Path+"/") {
			return "open in a running process"
		}
	}
	if now.Sub(e.LastUse) < InUseWindow {
		return fmt.Sprintf("used %s ago (within %s)", now.Sub(e.LastUse).Round(time.Minute), InUseWindow)
	}
	return ""
}

// lockHeld says whether another process holds an flock on path (missing: no).
func lockHeld(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// openFiles lists the files processes have open (every /proc/PID/fd link this user can
// read): a QEMU keeps its ISO and disks open while the guest runs.
func openFiles() []string {
	var out []string
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if t, err := os.Readlink(fd); err == nil && strings.HasPrefix(t, "/") {
			out = append(out, t)
		}
	}
	return out
}

// Policy says what Prune removes. Both bounds apply; zero disables one.
type Policy struct {
	// KeepDays: entries not used for this many days go.
	KeepDays int
	// MaxSize: then the least recently used go until the cache is at most this many bytes.
	MaxSize int64
	// DryRun lists what would go without removing it.
	DryRun bool
}

// Result is what Prune did.
type Result struct {
	Removed []Entry
	Kept    []Entry
	Before  int64 // bytes before
	After   int64 // bytes after
}

// Prune removes from root what p allows, least recently used first, never an entry in
// use (Entry.InUse) nor a kept kind. Each removal holds the entry's builder lock, so a
// builder starting meanwhile waits and then builds afresh rather than reading a half
// removed directory.
func Prune(root string, p Policy, now time.Time) (Result, error) {
	if p.KeepDays < 0 || p.MaxSize < 0 {
		return Result{}, fmt.Errorf("prune policy: negative bound (%d days, %d bytes)", p.KeepDays, p.MaxSize)
	}
	es, err := Scan(root, now)
	if err != nil {
		return Result{}, err
	}
	var r Result
	for _, e := range es {
		r.Before += e.Size
	}
	r.After = r.Before
	remove := map[int]bool{}
	// Oldest first.
	order := make([]int, len(es))
	for i := range order {
		order[i] = len(es) - 1 - i
	}
	if p.KeepDays > 0 {
		cut := now.Add(-time.Duration(p.KeepDays) * 24 * time.Hour)
		for _, i := range order {
			if es[i].Prunable() && es[i].LastUse.Before(cut) {
				remove[i] = true
				r.After -= es[i].Size
			}
		}
	}
	if p.MaxSize > 0 {
		for _, i := range order {
			if r.After <= p.MaxSize {
				break
			}
			if es[i].Prunable() && !remove[i] {
				remove[i] = true
				r.After -= es[i].Size
			}
		}
	}
	for _, i := range order {
		e := es[i]
		if !remove[i] {
			r.Kept = append(r.Kept, e)
			continue
		}
		if !p.DryRun {
			gone, err := removeEntry(e)
			if err != nil {
				return r, err
			}
			if !gone {
				e.InUse = "its builder took the lock"
				r.Kept = append(r.Kept, e)
				r.After += e.Size
				continue
			}
		}
		r.Removed = append(r.Removed, e)
	}
	return r, nil
}

// removeEntry deletes e under its builder's lock, checking again that nobody holds it
// (false: somebody took it since the scan, and e stays).
func removeEntry(e Entry) (bool, error) {
	if e.lock != "" {
		f, err := os.OpenFile(e.lock, os.O_CREATE|os.O_RDWR, 0o644)
		if err == nil {
			defer f.Close()
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
				return false, nil
			}
			// The lock file stays: a builder may be opening it right now, and a new one
			// would give two builders two locks.
			defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
		}
	}
	for _, p := range append([]string{e.Path}, e.Extra...) {
		if err := os.RemoveAll(p); err != nil {
			return false, fmt.Errorf("removing %s from the cache: %w", p, err)
		}
	}
	return true, nil
}

// Touch marks path as used now (its modification time): what keeps an entry from
// being pruned as unused. Errors are ignored: a mark is advisory.
func Touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// ParseSize reads a size: bytes, or a number with K, M, G or T (powers of 1024; an
// optional "iB" or "B" after the letter).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "i")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || t == "" {
		return 0, fmt.Errorf("size %q: want bytes or a number with K, M, G or T (e.g. 8G)", s)
	}
	return int64(v * float64(mult)), nil
}

// FormatSize prints bytes the way ParseSize reads them back (one decimal).
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}
