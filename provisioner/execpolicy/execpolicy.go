// Package execpolicy is the single execution policy every pre-nixos side effect
// goes through: external commands via Runner, file writes via Root.
//
// A dry run (PRE_NIXOS_EXEC unset or not exactly "1") still runs read-only
// probes (lsblk, wipefs -n, findmnt, ip -j ...) so a plan or a detection can be
// computed on a workstation, but logs and skips every command that changes the
// machine. File writes always land under Root, so pointing --root at a scratch
// directory keeps a dry run from touching anything outside it.
package execpolicy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ExecEnv is the environment variable that enables running commands.
const ExecEnv = "PRE_NIXOS_EXEC"

// ExecEnabled reports whether getenv says commands may run; only the exact
// value "1" counts, as in the Python pre-nixos, so a typo never destroys disks.
func ExecEnabled(getenv func(string) string) bool { return getenv(ExecEnv) == "1" }

// Cmd is one external command.
type Cmd struct {
	Name string
	Args []string
	// Env holds extra KEY=VALUE pairs added to the inherited environment.
	Env []string
	// Probe marks a read-only inspection that is safe in a dry run.
	Probe bool
}

// C builds a mutating command.
func C(name string, args ...string) Cmd { return Cmd{Name: name, Args: args} }

// P builds a read-only probe command.
func P(name string, args ...string) Cmd { return Cmd{Name: name, Args: args, Probe: true} }

// String is the shell-quoted command line; tests and logs compare it.
func (c Cmd) String() string {
	parts := make([]string, 0, 1+len(c.Args))
	parts = append(parts, Quote(c.Name))
	for _, a := range c.Args {
		parts = append(parts, Quote(a))
	}
	return strings.Join(parts, " ")
}

// Quote quotes s for a POSIX shell only when needed, like Python's shlex.quote.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./-_", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// Result is what a command produced. A non-zero exit is not an error at this
// level: callers know which codes they tolerate.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
	// Skipped is true when the policy logged the command instead of running it.
	Skipped bool
}

// ErrNotFound is returned (wrapped) when the executable is not on PATH.
var ErrNotFound = errors.New("executable not found")

// Runner runs commands. Implementations must be safe for sequential use; pre-nixos
// never runs two commands at once.
type Runner interface {
	Run(ctx context.Context, c Cmd) (Result, error)
}

// Check turns a result into an error unless the exit code is 0 or allowed.
func Check(res Result, err error, c Cmd, allowed ...int) error {
	if err != nil {
		return fmt.Errorf("running %s: %w", c, err)
	}
	if res.Skipped || res.ExitCode == 0 {
		return nil
	}
	for _, a := range allowed {
		if res.ExitCode == a {
			return nil
		}
	}
	msg := strings.TrimSpace(string(res.Stderr))
	if len(msg) > 400 {
		msg = msg[len(msg)-400:]
	}
	if msg != "" {
		return fmt.Errorf("%s exited %d: %s", c, res.ExitCode, msg)
	}
	return fmt.Errorf("%s exited %d", c, res.ExitCode)
}

// OS runs commands on this machine.
type OS struct {
	// LookPath defaults to exec.LookPath.
	LookPath func(string) (string, error)
}

// Run implements Runner.
func (o OS) Run(ctx context.Context, c Cmd) (Result, error) {
	look := o.LookPath
	if look == nil {
		look = exec.LookPath
	}
	path, err := look(c.Name)
	if err != nil {
		return Result{ExitCode: 127}, fmt.Errorf("%s: %w", c.Name, ErrNotFound)
	}
	cmd := exec.CommandContext(ctx, path, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A command that ignores SIGKILL's cousin SIGTERM must not hang the boot.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && ctx.Err() == nil:
		res.ExitCode = exitErr.ExitCode()
	default:
		return res, err
	}
	return res, nil
}

// Policy logs every command and runs it only when Exec is set or the command
// is a probe.
type Policy struct {
	Exec  bool
	Inner Runner
	Log   *slog.Logger
}

// Run implements Runner.
func (p Policy) Run(ctx context.Context, c Cmd) (Result, error) {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cmdline := c.String()
	if !p.Exec && !c.Probe {
		log.Info("pre_nixos.command.skip", "command", cmdline, "reason", "execution disabled")
		return Result{Skipped: true}, nil
	}
	log.Debug("pre_nixos.command.start", "command", cmdline, "probe", c.Probe)
	start := time.Now()
	res, err := p.Inner.Run(ctx, c)
	attrs := []any{"command", cmdline, "returncode", res.ExitCode, "duration_ms", time.Since(start).Milliseconds()}
	if err != nil {
		log.Warn("pre_nixos.command.failed", append(attrs, "error", err.Error())...)
		return res, err
	}
	level := slog.LevelInfo
	if c.Probe {
		level = slog.LevelDebug
	}
	if res.ExitCode != 0 {
		attrs = append(attrs, "stderr", tail(res.Stderr, 2000))
		if !c.Probe {
			level = slog.LevelWarn
		}
	}
	log.Log(ctx, level, "pre_nixos.command.finished", attrs...)
	return res, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Root is where file writes land. The zero value means "/".
type Root struct{ Dir string }

// Path maps an absolute path of the target system into the root.
func (r Root) Path(p string) string {
	if r.Dir == "" || r.Dir == "/" {
		return filepath.Clean("/" + p)
	}
	return filepath.Join(r.Dir, filepath.Clean("/"+p))
}

// ReadFile reads a file of the target system.
func (r Root) ReadFile(p string) ([]byte, error) { return os.ReadFile(r.Path(p)) }

// MkdirAll creates a directory of the target system.
func (r Root) MkdirAll(p string, perm os.FileMode) error {
	if err := os.MkdirAll(r.Path(p), perm); err != nil {
		return fmt.Errorf("creating directory %s: %w", r.Path(p), err)
	}
	return nil
}

// WriteFile replaces p atomically (temporary file + rename). Renaming over a
// symlink replaces the link itself, which is what sshd_config pointing into a
// read-only store needs; parents are created 0755.
func (r Root) WriteFile(p string, data []byte, perm os.FileMode) error {
	dst := r.Path(p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("creating directory for %s: %w", dst, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("setting mode of %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("replacing %s: %w", dst, err)
	}
	return nil
}

// AppendFile appends to p, creating it (and parents) when missing.
func (r Root) AppendFile(p string, data []byte, perm os.FileMode) error {
	dst := r.Path(p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("creating directory for %s: %w", dst, err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_APPEND|os.O_CREATE, perm)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dst, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("appending to %s: %w", dst, err)
	}
	return f.Close()
}
