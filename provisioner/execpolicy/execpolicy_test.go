package execpolicy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQuoteAndString(t *testing.T) {
	assert.Equal(t, "sgdisk --zap-all /dev/sda", C("sgdisk", "--zap-all", "/dev/sda").String())
	assert.Equal(t, "sh -c 'chmod 1777 /mnt/var/tmp'", C("sh", "-c", "chmod 1777 /mnt/var/tmp").String())
	assert.Equal(t, `echo '' 'it'"'"'s'`, C("echo", "", "it's").String())
}

func TestExecEnabledOnlyExactOne(t *testing.T) {
	for v, want := range map[string]bool{"1": true, "": false, "true": false, " 1": false, "yes": false} {
		assert.Equal(t, want, ExecEnabled(func(string) string { return v }), v)
	}
}

type recording struct{ ran []string }

func (r *recording) Run(_ context.Context, c Cmd) (Result, error) {
	r.ran = append(r.ran, c.String())
	return Result{ExitCode: 3, Stderr: []byte("boom")}, nil
}

func TestPolicy(t *testing.T) {
	var logs bytes.Buffer
	inner := &recording{}
	p := Policy{Exec: false, Inner: inner, Log: slog.New(slog.NewJSONHandler(&logs, nil))}
	res, err := p.Run(context.Background(), C("wipefs", "-a", "/dev/sda"))
	require.NoError(t, err)
	assert.True(t, res.Skipped)
	assert.Empty(t, inner.ran, "dry run must not run mutating commands")
	assert.Contains(t, logs.String(), `"msg":"pre_nixos.command.skip"`)

	res, err = p.Run(context.Background(), P("lsblk", "-dnpo", "NAME,TYPE,RM"))
	require.NoError(t, err)
	assert.Equal(t, []string{"lsblk -dnpo NAME,TYPE,RM"}, inner.ran, "probes run in a dry run")
	assert.Equal(t, 3, res.ExitCode)

	p.Exec = true
	_, _ = p.Run(context.Background(), C("wipefs", "-a", "/dev/sda"))
	assert.Len(t, inner.ran, 2)
}

func TestCheck(t *testing.T) {
	c := C("sgdisk", "--zap-all", "/dev/sda")
	assert.NoError(t, Check(Result{ExitCode: 2}, nil, c, 2))
	assert.NoError(t, Check(Result{Skipped: true}, nil, c))
	assert.EqualError(t, Check(Result{ExitCode: 4, Stderr: []byte("bad\n")}, nil, c), "sgdisk --zap-all /dev/sda exited 4: bad")
	assert.ErrorContains(t, Check(Result{}, errors.New("spawn"), c), "running sgdisk")
}

func TestOSRunner(t *testing.T) {
	res, err := OS{}.Run(context.Background(), C("sh", "-c", "echo out; echo err >&2; exit 7"))
	require.NoError(t, err)
	assert.Equal(t, "out\n", string(res.Stdout))
	assert.Equal(t, "err\n", string(res.Stderr))
	assert.Equal(t, 7, res.ExitCode)
	_, err = OS{}.Run(context.Background(), C("definitely-not-a-command-xyz"))
	assert.ErrorIs(t, err, ErrNotFound)
	res, err = OS{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo $PRE_NIXOS_T"}, Env: []string{"PRE_NIXOS_T=v"}})
	require.NoError(t, err)
	assert.Equal(t, "v\n", string(res.Stdout))
}

func TestRoot(t *testing.T) {
	dir := t.TempDir()
	r := Root{Dir: dir}
	assert.Equal(t, filepath.Join(dir, "etc/ssh/sshd_config"), r.Path("/etc/ssh/sshd_config"))
	assert.Equal(t, filepath.Join(dir, "etc/passwd"), r.Path("../../etc/passwd"), "paths cannot escape the root")
	assert.Equal(t, "/etc/x", Root{}.Path("/etc/x"))
	require.NoError(t, r.WriteFile("/a/b/c", []byte("1"), 0o600))
	fi, err := os.Stat(filepath.Join(dir, "a/b/c"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.NoError(t, r.AppendFile("/a/b/c", []byte("2"), 0o600))
	b, _ := r.ReadFile("/a/b/c")
	assert.Equal(t, "12", string(b))
	entries, _ := os.ReadDir(filepath.Join(dir, "a/b"))
	assert.Len(t, entries, 1, "no temporary files left behind")
}
