package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/bisect"
	"github.com/bootlab/bootlab/harness/bisect/vmprobe"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

// TestBisectInstallerISOs is issue 26's bisection across upstream ISOs, end to end
// through the bootlab binary: ISOs built from Debian's archive (the netboot package's
// menus and installer initrd as shipped, kernels from the archive's series), each
// candidate `NAME iso=PATH entry=install profile=debian-installer`, each probe booting
// the menu's "Install" entry, walking the installer's own dialogs to its shell and
// running the predicate there. The first ISO whose kernel is not the one the
// installer's modules were built for is the first bad one, and the report's diff of the
// last good and first bad runs shows the kernel release and the failing modprobe.
func TestBisectInstallerISOs(t *testing.T) {
	vmgate.VM(t)
	ctx, cancel := context.WithTimeout(context.Background(), vmScaled(20*time.Minute))
	defer cancel()
	bin := buildBootlab(t)
	work := t.TempDir()
	list, script, isos, err := vmprobe.InstallerSeries(ctx, labtest.Cache(), work, testWriter{t})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(isos), 3)
	require.Equal(t, isos[0].InstallerRelease, isos[0].KernelRelease, "the first ISO is the installer as shipped")
	require.Equal(t, isos[1].InstallerRelease, isos[1].KernelRelease, "the second has the archive's package of the installer's kernel")
	require.NotEqual(t, isos[2].InstallerRelease, isos[2].KernelRelease, "the third has a later kernel")

	dir := filepath.Join(work, "bisect")
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "bisect", "--candidates", list, "--script", script, "--dir", dir, "--probe-timeout", "10m")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("bootlab bisect took %s\nstdout:\n%s", time.Since(start).Round(100*time.Millisecond), stdout.String())
	require.NoError(t, err, "bootlab bisect exit status (0: first bad found); stderr:\n%s", stderr.String())

	out := stdout.String()
	first, last := isos[2], isos[1]
	require.Contains(t, out, "bisect found: first bad: "+first.Name+"; last good: "+last.Name+"\n")
	require.Contains(t, out, "diff of last good and first bad runs (bootlab diff ")
	// The predicate's steps, A (last good) against B (first bad).
	require.Contains(t, out, `A: pass, exit 0, output "`+last.KernelRelease+`\n"`)
	require.Contains(t, out, `B: pass, exit 0, output "`+first.KernelRelease+`\n"`)
	require.Regexp(t, `B: fail, exit [1-9][0-9]*, output ".*`+regexp.QuoteMeta(first.KernelRelease), out,
		"modprobe on the first bad ISO fails, naming the kernel release it looked for")

	require.Contains(t, out, "kernel: "+last.KernelRelease+" -> "+first.KernelRelease+"\n", "the boot evidence's kernel line")

	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	require.NoError(t, err)
	var res bisect.Result
	require.NoError(t, json.Unmarshal(b, &res))
	require.Equal(t, bisect.StatusFound, res.Status)
	require.Equal(t, 2, res.FirstBad)
	require.Equal(t, 1, res.LastGood)
	for _, pr := range res.Probes {
		require.NotEqual(t, bisect.Skip, pr.Verdict, "%s: %s", pr.Name, pr.Reason)
		md, err := runrec.ReadMetadata(filepath.Join(dir, pr.RunDir))
		require.NoError(t, err)
		require.Equal(t, "iso", md.Image.Kind, pr.Name)
		require.Equal(t, "direct", md.Image.Boot, "%s: the entry without a serial console is booted directly", pr.Name)
		require.Equal(t, vmprobe.InstallerEntry, md.Image.Entry, pr.Name)
		require.Equal(t, "vga=788 --- quiet console=ttyS0,115200n8", md.Image.Append, "%s: the entry's own command line, serial console last", pr.Name)
		for _, m := range []string{"installer_first_dialog", "installer_main_menu", "installer_shell", runrec.MilestoneRootShell} {
			_, ok := md.Milestone(m)
			require.True(t, ok, "%s: milestone %s", pr.Name, m)
		}
		t.Logf("probe %s: %s in %.1fs", pr.Name, pr.Verdict, pr.Duration.Seconds())
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
