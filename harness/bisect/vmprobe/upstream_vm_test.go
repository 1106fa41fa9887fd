package vmprobe

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/rundiff"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/bisect"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/shell"
)

// shellLoopInit is an upstream rescue image's /init: no init system, only a shell
// loop on the console. Its PID 1 ignores busybox poweroff's signal and nothing handles
// the ACPI power button: such a guest never powers itself off.
const shellLoopInit = `#!/bin/sh
. /etc/rc.mini
while :; do setsid cttyhack sh -l; done
`

// upstreamStyleISO wraps a Debian kernel and a busybox initramfs (whose /etc/release
// says release) in an ISO laid out like an upstream one: ISOLINUX whose default entry
// has no serial console.
func upstreamStyleISO(t *testing.T, ctx context.Context, name, release string) string {
	t.Helper()
	for _, tool := range []string{"xorriso"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is needed: apt-get install xorriso isolinux syslinux-common", tool)
	}
	m, err := labtest.Cache().BuildMini(ctx, images.MiniSpec{Version: name, Init: shellLoopInit,
		Files: map[string]images.File{"/etc/release": {Content: release + "\n"}}})
	require.NoError(t, err, "building the initramfs of %s", name)
	stage := filepath.Join(t.TempDir(), name)
	files := map[string]string{
		"live/vmlinuz":   m.Kernel,
		"live/initrd.gz": m.Initrd,
		"isolinux.bin":   "/usr/lib/ISOLINUX/isolinux.bin",
		"ldlinux.c32":    "/usr/lib/syslinux/modules/bios/ldlinux.c32",
	}
	for dst, src := range files {
		b, err := os.ReadFile(src)
		require.NoError(t, err, "reading %s (apt-get install isolinux syslinux-common)", src)
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(stage, dst)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(stage, dst), b, 0o644))
	}
	cfg := "DEFAULT live\nPROMPT 0\nTIMEOUT 10\nLABEL live\n  MENU LABEL Live system (" + name + ")\n  KERNEL /live/vmlinuz\n  APPEND initrd=/live/initrd.gz rdinit=/init quiet\n"
	require.NoError(t, os.WriteFile(filepath.Join(stage, "isolinux.cfg"), []byte(cfg), 0o644))
	iso := filepath.Join(t.TempDir(), name+".iso")
	out, err := exec.CommandContext(ctx, "xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-V", strings.ToUpper(name), "-J", "-R",
		"-b", "isolinux.bin", "-c", "boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", stage).CombinedOutput()
	require.NoError(t, err, "xorriso: %s", out)
	return iso
}

const releaseScript = `# the release file says whether the candidate is good
run uname -r
assert-output "cat /etc/release" ^good
`

// TestBisectUpstreamStyleISOs is issue 28's bisection: four upstream-style ISOs (the
// last two bad) whose guests never power off. Each probe stops as soon as its verdict
// is in (a sync and quit, not 50 s of waiting for a poweroff), and the report's diff of
// the last good and first bad runs names the predicate's differing output.
func TestBisectUpstreamStyleISOs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), scaled(15*time.Minute))
	defer cancel()
	var cands []bisect.Candidate
	for i, rel := range []string{"good", "good", "bad", "bad"} {
		name := "up-" + string(rune('1'+i))
		cands = append(cands, bisect.Candidate{Name: name, ISO: upstreamStyleISO(t, ctx, name, rel)})
	}
	pred := &bisect.Predicate{Kind: bisect.PredicateScript, ScriptPath: "check.script", ScriptText: releaseScript}
	p := &Prober{Profile: shell.Fixture, Config: labtest.Config(), LoginTimeout: scaled(2 * time.Minute), MemoryMB: 256}
	require.NoError(t, p.UsePredicate(pred))
	dir := filepath.Join(t.TempDir(), "bisect")
	start := time.Now()
	res, err := bisect.Run(ctx, bisect.Config{Candidates: cands, Dir: dir, Predicate: pred, ProbeTimeout: scaled(5 * time.Minute)}, p)
	require.NoError(t, err)
	t.Logf("bisection took %s: %s", time.Since(start).Round(100*time.Millisecond), res.Message)
	require.Equal(t, bisect.StatusFound, res.Status)
	require.Equal(t, 2, res.FirstBad, "first bad: up-3")
	require.Equal(t, 1, res.LastGood, "last good: up-2")
	for _, pr := range res.Probes {
		md, err := runrec.ReadMetadata(filepath.Join(dir, pr.RunDir))
		require.NoError(t, err)
		rs, _ := md.Milestone(runrec.MilestoneRootShell)
		sd, ok := md.Milestone(runrec.MilestoneShutdown)
		require.True(t, ok)
		t.Logf("probe %s: %s in %.1fs (root shell %.1fs, shutdown %.2fs: %s)", pr.Name, pr.Verdict, pr.Duration.Seconds(), rs.At.D().Seconds(), sd.Duration.D().Seconds(), sd.Note)
		require.Equal(t, "direct", md.Image.Boot, "the entry without a serial console is booted directly")
		require.Less(t, sd.Duration.D(), 3*time.Second, "%s: stopped within 3 s of its verdict", pr.Name)
		if pr.Verdict == bisect.Bad {
			require.Equal(t, runrec.Bad, md.Outcome)
		}
	}
	var txt bytes.Buffer
	require.NoError(t, bisect.WriteTextReport(&txt, res))
	report := txt.String()
	t.Logf("report:\n%s", report)
	require.NotContains(t, report, rundiff.NoDifferences)
	require.Contains(t, report, "    A: pass, exit 0, output \"good\\n\"")
	require.Contains(t, report, "    B: fail, exit 0, output \"bad\\n\": output does not match /^good/")
}
