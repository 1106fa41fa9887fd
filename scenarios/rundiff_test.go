package scenarios

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/labtest"
)

// sabotage breaks two units at runtime the way real regressions do: pre-nixos exits
// non-zero (a failed unit, "Failed to start" in the journal) and sshd takes 45 s to
// come back (the ssh milestone moves, blame says ssh.service got slower). Runtime
// drop-ins under /run vanish with the VM; the image is untouched.
func sabotage(pre, ssh string) string {
	return fmt.Sprintf(`mkdir -p /run/systemd/system/%[1]s.d /run/systemd/system/%[2]s.d && `+
		`printf '[Service]\nExecStart=\nExecStart=/bin/false\n' > /run/systemd/system/%[1]s.d/zz-bootlab-break.conf && `+
		`printf '[Service]\nExecStartPre=/bin/sleep 45\n' > /run/systemd/system/%[2]s.d/zz-bootlab-slow.conf && `+
		`systemctl daemon-reload && ( systemctl restart %[1]s; rc=$?; systemctl restart --no-block %[2]s; exit $rc )`, pre, ssh)
}

// TestRunDiffNamesWhatBroke starts the fixture twice (warm, both the same way). Right after login both boots are
// clean, and their evidence diffs as "no differences": what differs on every boot
// (timestamps, PIDs, addresses, UUIDs, unit timings) is normalised away. Then the
// second boot gets two units broken on purpose, and the diff of the two finished runs
// names the failed unit, its new journal errors and the milestone that moved, and
// nothing else.
func TestRunDiffNamesWhatBroke(t *testing.T) {
	// Both runs share a slug; a notes root of their own keeps other scenarios' runs of
	// the same image out of --against-last-pass.
	notes := filepath.Join(labtest.NotesRoot(), "rundiff")
	boot := func(broken bool) (clean, final string) {
		m := labtest.Boot(t, labtest.Standard(), labtest.Slug("rundiff"), labtest.Notes(notes),
			labtest.Disks(labtest.Disk("disk0.img", 4096)), labtest.Network(), labtest.Captures("always"),
			labtest.Warm("the diff is about two runs' evidence, both started the same way; nothing breaks before the release"))
		// Compare settled boots: pre-nixos done, the LAN up, no start job left.
		m.WaitForStorage(labtest.Provisioned)
		m.WaitForLAN()
		m.Execute("timeout 120 systemctl is-system-running --wait")
		require.Empty(t, m.Evidence().Stopped, "evidence right after login")
		clean = m.Snapshot("clean")
		var verdict error
		if broken {
			p := m.Profile()
			_, status := m.Execute(sabotage(p.PreNixosUnit, p.SSHUnit))
			require.NotZero(t, status, "restarting pre-nixos with ExecStart=/bin/false fails")
			// The verdict a failing scenario would give; the diff is about the evidence.
			verdict = errors.New("broken on purpose")
		}
		m.WaitForSSH()
		m.Evidence()
		// Each run closes here, not when the test ends: the diff compares finished
		// runs, and run B's --against-last-pass must find run A in the ledger.
		m.Close(verdict)
		return clean, m.Dir()
	}
	cleanA, runA := boot(false)
	cleanB, runB := boot(true)

	d := labtest.Diff(t, cleanA, cleanB)
	t.Logf("clean vs clean:\n%s", d.Text())
	require.True(t, d.Empty(), "two clean boots must diff as no differences:\n%s", d.Text())

	d = labtest.Diff(t, runA, runB)
	t.Logf("clean vs broken:\n%s", d.Text())
	pre := labtest.FixtureProfile().PreNixosUnit
	require.Equal(t, []string{pre}, d.Units.Failed)
	require.Empty(t, d.Units.Appeared, "no unit appears")
	require.Empty(t, d.Units.Vanished, "no unit vanishes")
	var moved []string
	for _, m := range d.Milestones {
		moved = append(moved, m.Name)
	}
	require.Equal(t, []string{"ssh"}, moved, "only the ssh milestone moved")
	require.NotEmpty(t, d.Journal, "the failure left errors in the journal")
	failedToStart := false
	for _, j := range d.Journal {
		require.Regexp(t, `pre-nixos|ssh`, j.Example, "a new journal warning unrelated to the broken units is boot-to-boot noise")
		failedToStart = failedToStart || strings.Contains(j.Example, pre)
	}
	require.True(t, failedToStart, "the journal errors name %s", pre)
	require.Nil(t, d.Kernel)
	require.Nil(t, d.Cmdline)
	for _, c := range d.Captures.Changed {
		require.Contains(t, []string{"systemctl-list-units", "systemctl-failed", "pre-nixos-files"}, c, "capture %s changed", c)
	}

	// The same through the command line, and --against-last-pass finds run A.
	require.Equal(t, runA, labtest.LastPass(t, notes, "rundiff", runB), "run A is the last pass before run B")
	html, err := os.ReadFile(filepath.Join(runB, "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), "Compared with the last pass")
	require.Contains(t, string(html), pre)
	require.Contains(t, string(html), "journal-warnings", "report.html lists the captures")
}
