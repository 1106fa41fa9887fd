package ci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// standIn does what the action a uses: step names would do, with local
// directories for GitHub's services. Inputs it does not implement fail the
// step rather than be ignored.
func (jr *jobRun) standIn(ctx context.Context, i int, s step) error {
	with := map[string]string{}
	for k, v := range s.With {
		x, err := jr.ec.expand(v)
		if err != nil {
			return err
		}
		with[k] = x
	}
	action, _, _ := strings.Cut(s.Uses, "@")
	known := map[string][]string{
		"actions/checkout":          {"fetch-depth"},
		"actions/setup-go":          {"go-version-file", "go-version", "cache"},
		"actions/cache/restore":     {"path", "key", "restore-keys"},
		"actions/cache/save":        {"path", "key"},
		"actions/upload-artifact":   {"name", "path", "if-no-files-found", "retention-days"},
		"actions/download-artifact": {"name", "pattern", "path", "merge-multiple"},
	}
	inputs, ok := known[action]
	if !ok {
		return fmt.Errorf("the workflow runner has no stand-in for %s", s.Uses)
	}
	for k := range with {
		if !slices.Contains(inputs, k) {
			return fmt.Errorf("the stand-in for %s does not implement the input %q", action, k)
		}
	}
	switch action {
	case "actions/checkout":
		return jr.checkout(ctx)
	case "actions/setup-go":
		goroot, err := jr.r.toolchain(jr, s)
		if err != nil {
			return err
		}
		jr.paths = append([]string{filepath.Join(goroot, "bin")}, jr.paths...)
		if with["cache"] == "true" && jr.inCtr {
			// setup-go's cache: kept between runs here, in the runner's state.
			jr.env["GOMODCACHE"], jr.env["GOCACHE"] = jr.r.goCache("mod"), jr.r.goCache("build")
		}
		fmt.Fprintf(jr.r.Out, "setup-go: %s on PATH\n", goroot)
		return nil
	case "actions/cache/restore":
		return jr.cacheRestore(ctx, s, with)
	case "actions/cache/save":
		return jr.cacheSave(ctx, with)
	case "actions/upload-artifact":
		return jr.upload(ctx, with)
	case "actions/download-artifact":
		return jr.download(ctx, with)
	}
	return nil
}

// checkout copies the tree into the workspace: a clone of the repository,
// and unless HeadOnly the working tree's tracked and new files laid over it
// and committed, so the job sees what make test is run on, in a clean
// checkout (git status empty, as actions/checkout leaves it).
func (jr *jobRun) checkout(ctx context.Context) error {
	r := jr.r
	git := func(dir string, args ...string) ([]byte, error) {
		c := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			return out, fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	if _, err := git(r.Repo, "clone", "-q", "--no-hardlinks", r.Repo, jr.ws); err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	if r.HeadOnly {
		return nil
	}
	// Files of the working tree: tracked ones and new ones git does not ignore.
	list, err := git(r.Repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	want := map[string]bool{}
	for _, f := range strings.Split(string(list), "\x00") {
		if f == "" {
			continue
		}
		want[f] = true
		src := filepath.Join(r.Repo, f)
		st, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			delete(want, f) // deleted in the working tree
			continue
		}
		if err != nil {
			return fmt.Errorf("checkout: %w", err)
		}
		if err := copyFile(src, filepath.Join(jr.ws, f), st); err != nil {
			return fmt.Errorf("checkout: copying %s: %w", f, err)
		}
	}
	tracked, err := git(jr.ws, "ls-files", "-z")
	if err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	for _, f := range strings.Split(string(tracked), "\x00") {
		if f != "" && !want[f] {
			if err := os.Remove(filepath.Join(jr.ws, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("checkout: %w", err)
			}
		}
	}
	status, err := git(jr.ws, "status", "--porcelain")
	if err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	if len(status) == 0 {
		return nil
	}
	if _, err := git(jr.ws, "add", "-A"); err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	if _, err := git(jr.ws, "-c", "user.name=bootlab ci-local", "-c", "user.email=ci-local@bootlab.invalid",
		"commit", "-q", "--no-verify", "-m", "ci-local: the working tree of "+r.Repo); err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	fmt.Fprintf(r.Out, "checkout: the working tree of %s (uncommitted changes committed in the copy)\n", r.Repo)
	return nil
}

func copyFile(src, dst string, st fs.FileInfo) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	_ = os.Remove(dst)
	if st.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, st.Mode().Perm())
}

var (
	goLineRE        = regexp.MustCompile(`(?m)^go\s+(\d+\.\d+(?:\.\d+)?)\s*$`)
	toolchainLineRE = regexp.MustCompile(`(?m)^toolchain\s+go(\S+)\s*$`)
)

// toolchain is setup-go: the Go release the step asks for (go-version, or
// go-version-file's toolchain line, else its go line), as a GOROOT on this
// machine. Go itself fetches that release through the module proxy
// (GOTOOLCHAIN=goX), which is where setup-go would download it from too.
func (r *Runner) toolchain(jr *jobRun, s step) (string, error) {
	version := s.With["go-version"]
	if f := s.With["go-version-file"]; f != "" {
		b, err := r.repoFile(f)
		if err != nil {
			return "", fmt.Errorf("setup-go: go-version-file %s: %w", f, err)
		}
		if m := toolchainLineRE.FindSubmatch(b); m != nil {
			version = string(m[1])
		} else if m := goLineRE.FindSubmatch(b); m != nil {
			version = string(m[1])
		} else {
			return "", fmt.Errorf("setup-go: %s has no go line", f)
		}
	}
	if version == "" {
		return "", errors.New("setup-go: neither go-version nor go-version-file")
	}
	if goroot, ok := r.toolchains[version]; ok {
		return goroot, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "go", "env", "GOROOT")
	c.Dir = os.TempDir() // outside any module: GOTOOLCHAIN alone decides
	c.Env = append(os.Environ(), "GOTOOLCHAIN=go"+version)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("setup-go: fetching go%s with GOTOOLCHAIN: %w: %s", version, err, strings.TrimSpace(stderr.String()))
	}
	goroot := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(goroot, "bin", "go")); err != nil {
		return "", fmt.Errorf("setup-go: go%s's GOROOT %q has no bin/go: %w", version, goroot, err)
	}
	if r.toolchains == nil {
		r.toolchains = map[string]string{}
	}
	r.toolchains[version] = goroot
	return goroot, nil
}

// shell runs a shell command where the job runs and returns its output.
func (jr *jobRun) shell(ctx context.Context, script string) (string, error) {
	var out bytes.Buffer
	env := append(slices.Clone(jr.base), "PATH="+jr.basePath)
	err := jr.sh.run(ctx, jr.ws, env, []string{"bash", "-ec", script}, &out)
	if err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// cachePaths reads an actions/cache path input: one path a line, ~ is HOME.
func (jr *jobRun) cachePaths(spec string) []string {
	var out []string
	for _, l := range strings.Split(spec, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(l, "~"); ok {
			l = jr.home + rest
		}
		if !filepath.IsAbs(l) {
			l = filepath.Join(jr.ws, l)
		}
		out = append(out, l)
	}
	return out
}

var keyRE = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func (r *Runner) cacheDir(key string) string {
	return filepath.Join(r.cacheStore(), keyRE.ReplaceAllString(key, "_"))
}

// cacheRestore is actions/cache/restore on a local store: the key's entry,
// else the newest entry whose key starts with a restore-keys prefix.
func (jr *jobRun) cacheRestore(ctx context.Context, s step, with map[string]string) error {
	paths := jr.cachePaths(with["path"])
	if len(paths) == 0 || with["key"] == "" {
		return errors.New("cache/restore without path or key")
	}
	hit, matched := "false", ""
	if _, err := os.Stat(jr.r.cacheDir(with["key"])); err == nil {
		hit, matched = "true", with["key"]
	} else {
		for _, prefix := range strings.Split(with["restore-keys"], "\n") {
			prefix = strings.TrimSpace(prefix)
			if prefix == "" || matched != "" {
				continue
			}
			entries, _ := os.ReadDir(jr.r.cacheStore())
			var newest time.Time
			for _, e := range entries {
				info, err := e.Info()
				if e.IsDir() && strings.HasPrefix(e.Name(), keyRE.ReplaceAllString(prefix, "_")) && err == nil && info.ModTime().After(newest) {
					matched, newest = e.Name(), info.ModTime()
				}
			}
		}
	}
	if s.ID != "" {
		jr.ec.steps[s.ID] = map[string]string{"cache-hit": hit, "cache-matched-key": matched}
	}
	if matched == "" {
		fmt.Fprintf(jr.r.Out, "cache: no entry for %s\n", with["key"])
		return nil
	}
	src := jr.r.cacheDir(matched)
	for i, p := range paths {
		if _, err := jr.shell(ctx, fmt.Sprintf("mkdir -p %q && cp -a %q/. %q/", p, filepath.Join(src, fmt.Sprint(i)), p)); err != nil {
			return fmt.Errorf("cache: restoring %s: %w", p, err)
		}
	}
	du, _ := jr.shell(ctx, fmt.Sprintf("du -sh %q | cut -f1", src))
	fmt.Fprintf(jr.r.Out, "cache: restored %s (%s) into %s (exact hit: %s)\n", matched, strings.TrimSpace(du), strings.Join(paths, " "), hit)
	return nil
}

// cacheSave is actions/cache/save on the local store. A key saved already
// is left as it is (GitHub refuses to overwrite a key too); a path that does
// not exist or holds nothing fails, since there is nothing to keep.
func (jr *jobRun) cacheSave(ctx context.Context, with map[string]string) error {
	paths := jr.cachePaths(with["path"])
	if len(paths) == 0 || with["key"] == "" {
		return errors.New("cache/save without path or key")
	}
	dst := jr.r.cacheDir(with["key"])
	if _, err := os.Stat(dst); err == nil {
		fmt.Fprintf(jr.r.Out, "cache: %s is saved already; not overwritten\n", with["key"])
		return nil
	}
	tmp := dst + ".saving"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	for i, p := range paths {
		n, err := jr.shell(ctx, fmt.Sprintf("[ -d %q ] && find %q -type f | wc -l", p, p))
		if err != nil || strings.TrimSpace(n) == "0" {
			return fmt.Errorf("cache: nothing to save: %s does not exist or holds no file", p)
		}
		if _, err := jr.shell(ctx, fmt.Sprintf("mkdir -p %q && cp -a %q/. %q/", filepath.Join(tmp, fmt.Sprint(i)), p, filepath.Join(tmp, fmt.Sprint(i)))); err != nil {
			return fmt.Errorf("cache: saving %s: %w", p, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	du, _ := jr.shell(ctx, fmt.Sprintf("du -sh %q | cut -f1", dst))
	fmt.Fprintf(jr.r.Out, "cache: saved %s as %s (%s)\n", strings.Join(paths, " "), with["key"], strings.TrimSpace(du))
	return nil
}

// upload is actions/upload-artifact into this run's artefact store. An
// upload that would be empty (unless if-no-files-found: ignore), carry a
// disk image, or reuse a name fails.
func (jr *jobRun) upload(ctx context.Context, with map[string]string) error {
	name := with["name"]
	if name == "" {
		name = "artifact"
	}
	files, root, err := uploadSetWith(with["path"], func(root string) ([]string, error) {
		out, err := jr.shell(ctx, fmt.Sprintf("[ ! -e %q ] || find %q -type f -print0", root, root))
		if err != nil {
			return nil, err
		}
		var l []string
		for _, f := range strings.Split(out, "\x00") {
			if f != "" {
				l = append(l, f)
			}
		}
		return l, nil
	})
	if err != nil {
		return fmt.Errorf("upload %q: %w", name, err)
	}
	if len(files) == 0 {
		if with["if-no-files-found"] == "ignore" {
			fmt.Fprintf(jr.r.Out, "upload %q: no files (if-no-files-found: ignore)\n", name)
			return nil
		}
		return fmt.Errorf("upload %q: no files under %q", name, with["path"])
	}
	for _, f := range files {
		if isDiskImage(f) {
			return fmt.Errorf("upload %q would include the disk image %s", name, f)
		}
	}
	dst := filepath.Join(jr.r.Artifacts, name)
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("upload %q: an artefact of that name was uploaded already in this run", name)
	}
	list := filepath.Join(jr.temp, "upload-"+keyRE.ReplaceAllString(name, "_")+".list")
	var rel []string
	for _, f := range files {
		r, err := filepath.Rel(root, f)
		if err != nil {
			return err
		}
		rel = append(rel, r)
	}
	if err := os.WriteFile(list, []byte(strings.Join(rel, "\x00")+"\x00"), 0o644); err != nil {
		return err
	}
	if _, err := jr.shell(ctx, fmt.Sprintf("mkdir -p %q && tar -C %q --null -T %q -cf - | tar -C %q -xf -", dst, root, list, dst)); err != nil {
		return fmt.Errorf("upload %q: copying: %w", name, err)
	}
	fmt.Fprintf(jr.r.Out, "upload %q: %d file(s) from %s into %s\n", name, len(files), root, dst)
	return nil
}

// download is actions/download-artifact from this run's artefact store:
// `name` into path, `pattern` each match into path/NAME. An artefact no job
// of this run uploaded fails.
func (jr *jobRun) download(ctx context.Context, with map[string]string) error {
	dst := with["path"]
	if dst == "" {
		dst = jr.ws
	}
	if with["merge-multiple"] == "true" {
		return errors.New("download-artifact: the stand-in does not merge artefacts (merge-multiple)")
	}
	entries, _ := os.ReadDir(jr.r.Artifacts)
	var names []string
	for _, e := range entries {
		if with["name"] != "" && e.Name() == with["name"] {
			names = append(names, e.Name())
		} else if with["name"] == "" {
			if ok, _ := path.Match(valueOrStr(with["pattern"], "*"), e.Name()); ok {
				names = append(names, e.Name())
			}
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("download-artifact: no artefact named %q (pattern %q) was uploaded in this run: the jobs that upload it did not run here",
			with["name"], with["pattern"])
	}
	for _, n := range names {
		to := dst
		if with["name"] == "" {
			to = filepath.Join(dst, n)
		}
		if _, err := jr.shell(ctx, fmt.Sprintf("mkdir -p %q && cp -a %q/. %q/", to, filepath.Join(jr.r.Artifacts, n), to)); err != nil {
			return fmt.Errorf("download-artifact %s: %w", n, err)
		}
	}
	fmt.Fprintf(jr.r.Out, "download-artifact: %s into %s\n", strings.Join(names, ", "), dst)
	return nil
}

func valueOrStr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func isDiskImage(p string) bool {
	switch path.Ext(p) {
	case ".img", ".qcow2", ".raw", ".iso":
		return true
	}
	return false
}

// uploadSet returns the files upload-artifact would take for a path input,
// listing this machine's files.
func uploadSet(spec string) ([]string, error) {
	files, _, err := uploadSetWith(spec, func(root string) ([]string, error) {
		var l []string
		err := filepath.WalkDir(root, func(f string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil || d.IsDir() {
				return err
			}
			l = append(l, f)
			return nil
		})
		return l, err
	})
	return files, err
}

// uploadSetWith returns the files upload-artifact would take for a path
// input (one pattern per line; `!` lines exclude; `**` spans directories)
// and the directory they are stored relative to (the includes' common
// root), with list giving the files under a directory.
func uploadSetWith(spec string, list func(root string) ([]string, error)) ([]string, string, error) {
	var incl, excl []string
	for _, l := range strings.Split(spec, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case strings.HasPrefix(l, "!"):
			excl = append(excl, l[1:])
		default:
			incl = append(incl, l)
		}
	}
	var files []string
	common := ""
	for _, p := range incl {
		root := globRoot(p)
		if common == "" {
			common = root
		}
		for !strings.HasPrefix(root+"/", strings.TrimSuffix(common, "/")+"/") {
			common = filepath.Dir(common)
		}
		all, err := list(root)
		if err != nil {
			return nil, "", fmt.Errorf("listing %s: %w", p, err)
		}
	next:
		for _, f := range all {
			if !matchUpload(p, f) {
				continue
			}
			for _, x := range excl {
				if matchUpload(x, f) {
					continue next
				}
			}
			files = append(files, f)
		}
	}
	slices.Sort(files)
	return slices.Compact(files), common, nil
}

// globRoot is the directory part of a pattern before its first wildcard.
func globRoot(p string) string {
	i := strings.IndexAny(p, "*?[")
	if i < 0 {
		return p
	}
	return filepath.Dir(p[:i] + "x")
}

// matchUpload reports whether file f is taken by pattern p: a directory
// takes everything under it, DIR/**/GLOB any file under DIR whose name
// matches GLOB, anything else is a plain glob.
func matchUpload(p, f string) bool {
	if !strings.ContainsAny(p, "*?[") {
		return f == p || strings.HasPrefix(f, strings.TrimSuffix(p, "/")+"/")
	}
	if dir, glob, ok := strings.Cut(p, "/**/"); ok {
		ok, _ := path.Match(glob, path.Base(f))
		return ok && strings.HasPrefix(f, dir+"/")
	}
	if dir, ok := strings.CutSuffix(p, "/**"); ok {
		return strings.HasPrefix(f, dir+"/")
	}
	ok, _ := path.Match(p, f)
	return ok
}
