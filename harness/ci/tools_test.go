package ci

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// repoRoot is the module root: this package sits two levels under it (harness/ci).
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source to find the repository root")
	}
	root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s has no go.mod: %v", root, err)
	}
	return root
}

// requireTool finds a command or fails the test with the way to install it;
// these checks guard shipped files, so a missing tool must not pass quietly.
func requireTool(t *testing.T, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// `go install` puts binaries here, which is often not on PATH.
	for _, dir := range goBinDirs() {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("%s not found on PATH or in the Go bin directory; install it with: %s", name, install)
	return ""
}

func goBinDirs() []string {
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(string(bytes.TrimSpace(out))) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	return dirs
}

// nixEnv gives nix-instantiate a private state directory: it wants one even
// for --parse and --eval, and the system one may be unwritable or shared.
func nixEnv(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(),
		"NIX_STATE_DIR="+filepath.Join(dir, "state"),
		"NIX_LOG_DIR="+filepath.Join(dir, "log"),
		"NIX_CONF_DIR="+conf,
	)
}

const installNix = "apt-get install nix-bin"

// nixParse returns nix-instantiate's normalised rendering of a .nix file:
// comments gone, dotted attribute paths nested, spacing canonical. Text
// checks against it cannot be fooled by a commented-out line.
func nixParse(t *testing.T, path string) string {
	t.Helper()
	bin := requireTool(t, "nix-instantiate", installNix)
	cmd := exec.Command(bin, "--parse", path)
	cmd.Env = nixEnv(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-instantiate --parse %s: %v\n%s", path, err, stderr.String())
	}
	return string(out)
}
