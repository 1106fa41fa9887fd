package images

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
	"github.com/bootlab/bootlab/artifacts/cacheprune"
	"github.com/bootlab/bootlab/artifacts/progress"
)

// toolPackages names the Debian package that provides each host tool the builders run,
// so a missing tool is reported as something to install rather than "file not found".
var toolPackages = map[string]string{
	"apt-get":    "apt",
	"apt-cache":  "apt",
	"dpkg-deb":   "dpkg",
	"dpkg":       "dpkg",
	"busybox":    "busybox-static",
	"cpio":       "cpio",
	"mmdebstrap": "mmdebstrap",
	"mksquashfs": "squashfs-tools",
	"xorriso":    "xorriso",
	"go":         "golang-go (or Go from go.dev)",
}

// ErrMissingTool is a host tool an image build needs and does not find: the host's
// problem (bootlab exits 2), not the image's.
var ErrMissingTool = errors.New("missing host tools")

// needTools fails with the packages to install when any tool is missing from PATH.
func needTools(tools ...string) error {
	var missing, pkgs []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
			pkgs = append(pkgs, toolPackages[t])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w %s: install them with `apt-get install %s`",
			ErrMissingTool, strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	return nil
}

func sleepCtx(ctx context.Context, ms int) error {
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// run runs a command, returning its stdout; stderr is folded into the error.
func run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// debInfo is what the apt index says about one package: enough to name a downloaded
// .deb and to key caches by its SHA256 without hashing 100 MB files on every call.
type debInfo struct {
	Stamp    string `json:"stamp"`
	Package  string `json:"package"`
	Version  string `json:"version"`
	Filename string `json:"filename"`
	SHA256   string `json:"sha256"`
	Depends  string `json:"depends"`
}

// aptStamp changes whenever `apt-get update` replaces index files, which invalidates
// memoised apt-cache answers (apt-cache itself costs ~0.7 s per call here).
func aptStamp() string {
	st, err := os.Stat("/var/lib/apt/lists")
	if err != nil {
		return "no-lists"
	}
	return fmt.Sprintf("%d", st.ModTime().UnixNano())
}

// resolveDeb asks apt (memoised per apt index state) for the candidate of pkg.
func (c Cache) resolveDeb(ctx context.Context, pkg string) (*debInfo, error) {
	memo := filepath.Join(c.dir(), "debs", "resolve", cleanName(pkg)+".json")
	stamp := aptStamp()
	if b, err := os.ReadFile(memo); err == nil {
		var d debInfo
		if json.Unmarshal(b, &d) == nil && d.Stamp == stamp && d.Package == pkg {
			return &d, nil
		}
	}
	if err := needTools("apt-cache"); err != nil {
		return nil, err
	}
	out, err := run(ctx, "", "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return nil, fmt.Errorf("looking up Debian package %s (is it in the apt sources? run apt-get update): %w", pkg, err)
	}
	d := &debInfo{Stamp: stamp, Package: pkg}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" && d.Version != "" {
			break // first stanza only
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Version":
			d.Version = v
		case "Filename":
			d.Filename = v
		case "SHA256":
			d.SHA256 = v
		case "Depends":
			d.Depends = v
		}
	}
	if d.Version == "" || d.Filename == "" || d.SHA256 == "" {
		return nil, fmt.Errorf("apt-cache show %s: no Version/Filename/SHA256 in %q", pkg, truncate(string(out), 300))
	}
	if err := atomicfile.WriteJSON(memo, d); err != nil {
		return nil, err
	}
	return d, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// fetchDeb returns the path of pkg's candidate .deb in the cache, downloading it with
// apt-get download (which verifies it against the signed index) when absent.
func (c Cache) fetchDeb(ctx context.Context, pkg string) (string, *debInfo, error) {
	d, err := c.resolveDeb(ctx, pkg)
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(c.dir(), "debs")
	path := filepath.Join(dir, filepath.Base(d.Filename))
	if _, err := os.Stat(path); err == nil {
		cacheprune.Touch(path) // the recent-use mark bootlab cache prune keeps by
		return path, d, nil
	}
	if err := needTools("apt-get"); err != nil {
		return "", nil, err
	}
	unlock, err := LockFile(ctx, filepath.Join(dir, ".download-"+cleanName(pkg)+".lock"))
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return path, d, nil
	}
	tmp, err := os.MkdirTemp(dir, ".dl-")
	if err != nil {
		return "", nil, fmt.Errorf("creating download directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	slog.Info("downloading Debian package", "package", pkg, "version", d.Version)
	stop := reporter().Ticker("download "+pkg, func(e time.Duration) string {
		return fmt.Sprintf("downloading %s %s (%s)", pkg, d.Version, progress.Elapsed(e))
	})
	defer stop()
	// The _apt sandbox user cannot write into a root-owned cache; running unsandboxed is
	// what apt would fall back to anyway, minus the warning.
	if _, err := run(ctx, tmp, "apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", pkg+"="+d.Version); err != nil {
		return "", nil, fmt.Errorf("downloading %s: %w", pkg, err)
	}
	got := filepath.Join(tmp, filepath.Base(d.Filename))
	if _, err := os.Stat(got); err != nil {
		// apt names files with the epoch escaped (%3a); find whatever it wrote.
		m, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
		if len(m) != 1 {
			return "", nil, fmt.Errorf("downloading %s: expected one .deb, found %v", pkg, m)
		}
		got = m[0]
	}
	if err := os.Rename(got, path); err != nil {
		return "", nil, fmt.Errorf("storing %s: %w", pkg, err)
	}
	stop()
	if st, err := os.Stat(path); err == nil {
		reporter().Done(fmt.Sprintf("downloaded %s %s (%d KiB)", pkg, d.Version, st.Size()>>10))
	}
	return path, d, nil
}
