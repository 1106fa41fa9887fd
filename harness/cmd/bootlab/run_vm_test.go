package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/report"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

// TestRunPauseAttachReport is issue 4's end-to-end check of the command: `bootlab run`
// on the mini image pauses after login, a client attaches through the console socket,
// types a command and sees its output, detaches; the run then finishes and leaves every
// record, and report.html renders in headless Chromium (screenshot kept in the run).
//
// The notes directory is t.TempDir()'s deep path again: a capture request timing out in
// the channel reconnect (`__blc`) was once blamed on it, but the sockets have always been
// in a short private directory (harness/lab TestPauseSocketsUnderALongRunDirectory) and
// the test passes under the deep path (59 s, 2026-12-02 10:50); those failures came under
// heavy load, see docs/faults.md.
func TestRunPauseAttachReport(t *testing.T) {
	vmgate.VM(t)
	notes := t.TempDir()
	// The capture request has timed out in the channel reconnect a few times under heavy
	// load (docs/faults.md) and the run directory went with t.TempDir: keep the logs'
	// ends in the test output, where CI shows them (.ci/failed-tests.sh).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, f := range []string{lab.HarnessLog, lab.TranscriptLog, lab.SerialLog} {
			paths, _ := filepath.Glob(filepath.Join(notes, "*", f))
			for _, p := range paths {
				b, _ := os.ReadFile(p)
				lines := strings.Split(string(b), "\n")
				t.Logf("last lines of %s:\n%s", p, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
	var stdout, stderr fakeguest.Buffer
	code := make(chan int, 1)
	go func() {
		code <- Main([]string{"run", "--image", "mini", "--notes", notes, "--pause-after", "login", "--debug-wait", "40s", "--cmd", "uname -r"}, &stdout, &stderr)
	}()
	// Wait for the pause to say how to attach (the socket exists by then).
	var link string
	deadline := time.Now().Add(vmScaled(4 * time.Minute))
	for link == "" && time.Now().Before(deadline) {
		matches, _ := filepath.Glob(filepath.Join(notes, "*", lab.ConsoleSocket))
		if len(matches) == 1 && (strings.Contains(stderr.String(), "press Enter") || strings.Contains(stderr.String(), "no terminal")) {
			link = matches[0]
		}
		select {
		case c := <-code:
			t.Fatalf("bootlab run ended (%d) before pausing:\n%s", c, stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	require.NotEmpty(t, link, "the paused run serves its console; stderr:\n%s", stderr.String())
	require.Contains(t, stderr.String(), "bootlab attach "+filepath.Dir(link), "the pause says how to attach")
	target, err := os.Readlink(link)
	require.NoError(t, err)
	conn, err := net.Dial("unix", target)
	require.NoError(t, err)
	_, err = conn.Write([]byte("echo attached-$((6*7))\n"))
	require.NoError(t, err)
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), "attached-42") {
		_ = conn.SetReadDeadline(time.Now().Add(vmScaled(time.Minute)))
		n, err := conn.Read(buf)
		require.NoError(t, err, "reading the console; so far: %q", seen.String())
		seen.Write(buf[:n])
	}
	conn.Close() // detach

	// Another process asks the paused run for fresh captures.
	var capOut, capErr fakeguest.Buffer
	require.Equal(t, exitPass, Main([]string{"capture", "--running", filepath.Dir(link)}, &capOut, &capErr), capErr.String())
	require.Contains(t, capOut.String(), "ip -o link", "the captures index lists the network set")
	require.Contains(t, capOut.String(), "dmesg", "and the kernel set")

	select {
	case c := <-code:
		require.Equal(t, exitPass, c, "stderr:\n%s", stderr.String())
	case <-time.After(vmScaled(4 * time.Minute)):
		t.Fatalf("bootlab run did not finish after the pause; stderr:\n%s", stderr.String())
	}
	dir := filepath.Dir(link)
	require.Contains(t, stdout.String(), "verdict: pass")
	require.Contains(t, stdout.String(), "[exit 0,", "the framed command's status is printed")
	for _, f := range []string{runrec.MetadataFile, lab.SerialLog, lab.TranscriptLog, lab.HarnessLog, runrec.ReportFile, "captures/index.md"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
		require.Positive(t, st.Size(), f)
	}
	transcript, _ := os.ReadFile(filepath.Join(dir, lab.TranscriptLog))
	require.Contains(t, string(transcript), "echo attached-$((6*7))", "what the attached client typed is in the transcript")
	m, err := runrec.ReadMetadata(dir)
	require.NoError(t, err)
	require.Equal(t, runrec.Pass, m.Outcome)

	png := filepath.Join(dir, "report.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, report.Screenshot(ctx, filepath.Join(dir, runrec.ReportFile), png), "report.html renders in headless Chromium (apt-get install chromium)")
	st, err := os.Stat(png)
	require.NoError(t, err)
	require.Greater(t, st.Size(), int64(10_000), "a real page, not a blank one")
	html, _ := os.ReadFile(filepath.Join(dir, runrec.ReportFile))
	require.Contains(t, string(html), "pass")
	require.Contains(t, string(html), "root_shell", "the timeline shows the milestones")
}

// TestInspectMiniAndISO: `bootlab inspect` prints the files and the key that were put in.
func TestInspectMiniAndISO(t *testing.T) {
	vmgate.VM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, err := labtest.Cache().BuildMini(ctx, images.MiniSpec{})
	require.NoError(t, err)
	var out, errb fakeguest.Buffer
	require.Equal(t, exitPass, Main([]string{"inspect", "--kernel", m.Kernel, "--initrd", m.Initrd}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "bin/busybox")
	require.Contains(t, out.String(), "etc/passwd")

	for _, tool := range []string{"xorriso", "mksquashfs"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is needed: apt-get install xorriso squashfs-tools", tool)
	}
	key, err := labtest.Cache().RootKey()
	require.NoError(t, err)
	root := t.TempDir()
	tree := filepath.Join(root, "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "etc/pre-nixos"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "etc/pre-nixos/root_key.pub"), []byte(key.AuthorizedKey+"\n"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "etc/systemd/system"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "etc/systemd/system/pre-nixos.service"), []byte("[Service]\nExecStart=/bin/true\n"), 0o644))
	isoDir := filepath.Join(root, "iso", "live")
	require.NoError(t, os.MkdirAll(isoDir, 0o755))
	run := func(name string, args ...string) {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
	}
	run("mksquashfs", tree, filepath.Join(isoDir, "filesystem.squashfs"), "-quiet", "-noappend")
	iso := filepath.Join(root, "test.iso")
	run("xorriso", "-as", "mkisofs", "-quiet", "-V", "BOOTLAB_TEST", "-o", iso, filepath.Join(root, "iso"))
	out.Reset()
	require.Equal(t, exitPass, Main([]string{"inspect", iso}, &out, &errb), errb.String())
	require.Contains(t, out.String(), key.Fingerprint)
	require.Contains(t, out.String(), "pre-nixos.service")
	require.Contains(t, out.String(), "etc/pre-nixos/root_key.pub")

	require.Equal(t, exitUsage, Main([]string{"inspect", "/nonexistent.iso"}, &out, &errb), "a missing image is a usage error")
}

var vmScaled = labtest.Scaled
