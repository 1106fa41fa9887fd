package bisect

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/isoinspect/isotest"
)

func writeISO(t *testing.T, dir, name string, hostile bool) string {
	t.Helper()
	b := isotest.New("CAND")
	b.Dir(b.Root, b.Root, b.File("README.TXT;1", []byte("x")))
	if hostile {
		binary.LittleEndian.PutUint32(b.VD(0)[132:], 0xF0000000) // a 3.75 GiB path table
	}
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b.Bytes(), 0o644))
	return p
}

// Every ISO candidate is read through the bounded reader before anything is probed:
// a hostile one ends the command with one line and no bisect directory, and one that
// turned hostile since is refused on --resume. A missing image and a file that is not
// ISO9660 at all are left to the probe.
func TestHostileISOCandidatesAreRefusedFirst(t *testing.T) {
	tmp := t.TempDir()
	good := writeISO(t, tmp, "good.iso", false)
	bad := writeISO(t, tmp, "bad.iso", true)
	notISO := filepath.Join(tmp, "raw.img")
	require.NoError(t, os.WriteFile(notISO, []byte("not an ISO"), 0o644))
	require.NoError(t, CheckISOs(context.Background(), []Candidate{{Name: "a", ISO: good}, {Name: "b", ISO: notISO}, {Name: "c", ISO: filepath.Join(tmp, "missing.iso")}, {Name: "d", Kernel: bad}}))

	dir := filepath.Join(tmp, "b")
	sp := &shellProber{}
	code, out, errs := runMain(t, sp, "--dir", dir, "--run", "true", good, bad)
	require.Equal(t, ExitUsage, code, "stdout:\n%s\nstderr:\n%s", out, errs)
	require.Equal(t, 1, strings.Count(errs, "\n"), "one line: %s", errs)
	require.Contains(t, errs, "bootlab bisect: candidate bad: "+bad+" is not a readable ISO9660 image: malformed or hostile image: primary volume descriptor claims a 4026531840-byte path table")
	require.NoDirExists(t, dir)
	require.Zero(t, sp.calls)

	// A bisection interrupted, then an image replaced by a hostile one.
	second := writeISO(t, tmp, "second.iso", false)
	ctx, cancel := context.WithCancel(context.Background())
	interrupting := &interruptingProber{shellProber: shellProber{}, after: 1, cancel: cancel}
	var o, e bytes.Buffer
	code = Main(ctx, []string{"--dir", dir, "--run", "true", good, second}, interrupting, &o, &e)
	require.Equal(t, ExitError, code, "stderr: %s", e.String())
	require.NoError(t, os.Rename(bad, second))
	sp = &shellProber{}
	code, out, errs = runMain(t, sp, "--resume", dir)
	require.Equal(t, ExitUsage, code, "stdout:\n%s\nstderr:\n%s", out, errs)
	require.Contains(t, errs, "candidate second: "+second+" is not a readable ISO9660 image: malformed or hostile image")
	require.Zero(t, sp.calls)
}
