package rundiff

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/runrec"
)

// fakeRun writes a run directory with the given milestones (name -> phase seconds, in
// order) and evidence captures, as the lab would.
type fakeRun struct {
	slug       string
	outcome    runrec.Outcome
	started    time.Time
	milestones [][2]any
	captures   map[string]string
}

func (f fakeRun) write(t *testing.T, root string) string {
	t.Helper()
	if f.started.IsZero() {
		f.started = time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	}
	r, err := runrec.Create(root, f.slug, f.started)
	require.NoError(t, err)
	at := f.started
	for _, m := range f.milestones {
		at = at.Add(time.Duration(m[1].(float64) * float64(time.Second)))
		require.NoError(t, r.Milestone(m[0].(string), at))
	}
	require.NoError(t, r.Finish(f.outcome, "", at.Add(time.Second)))
	dir := filepath.Join(r.Dir, filepath.FromSlash(EvidenceDir))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	var recs []CaptureRecord
	for name, body := range f.captures {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".txt"), []byte(body), 0o644))
		recs = append(recs, CaptureRecord{Set: "boot", Name: name, File: name + ".txt", Size: len(body), DurationMS: 12})
	}
	require.NoError(t, AppendCaptureIndex(dir, recs))
	return r.Dir
}

func cleanMilestones(login, ssh float64) [][2]any {
	return [][2]any{{"spawn", 0.1}, {"first_output", 1.0}, {"login_prompt", login}, {"root_shell", 3.0}, {"ssh", ssh}}
}

// evidence is a clean boot's captures (testdata/evidence), with extra replacing some.
func evidence(t *testing.T, boot string, extra map[string]string) map[string]string {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "evidence", boot, name))
		require.NoError(t, err)
		return string(b)
	}
	c := map[string]string{}
	for _, n := range []string{capKernel, capCmdline, capJournalW, capUnits, capFailed, capBlame, capPlan, capPNFiles, "ip-addr", "lsblk", "networkctl-status", "systemd-analyze-critical-chain"} {
		c[n] = read(n + ".txt")
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func TestTwoCleanBootsDiffAsNoDifferences(t *testing.T) {
	root := t.TempDir()
	a := fakeRun{slug: "fixture", outcome: runrec.Pass, milestones: cleanMilestones(70, 4), captures: evidence(t, "boot1", nil)}.write(t, root)
	b := fakeRun{slug: "fixture", outcome: runrec.Pass, milestones: cleanMilestones(81, 6), captures: evidence(t, "boot2", nil)}.write(t, root)
	d, err := CompareDirs(a, b, Options{})
	require.NoError(t, err)
	require.True(t, d.Empty(), "two clean boots:\n%s", d.Text())
	require.Contains(t, d.Text(), NoDifferences)
}

// Kernel lines that only say the host did not run the guest's CPU for a while come and
// go with the host's load: a clean pair diffed in CI failed on "tsc: Unable to calibrate
// against PIT" in one boot only. A soft lockup is still a finding.
func TestHostStarvationIsNotADifference(t *testing.T) {
	a := "[    1.0] fixture kernel: Linux version 6.1\n"
	b := a + strings.Join([]string{
		"[    2.4] fixture kernel: tsc: Unable to calibrate against PIT",
		"[    2.5] fixture kernel: tsc: Fast TSC calibration failed",
		"[   32.2] fixture kernel: clocksource: Long readout interval, skipping watchdog check: cs_nsec: 2750521670 wd_nsec: 2750502570",
		"[   40.1] fixture kernel: clocksource: timekeeping watchdog on CPU0: Marking clocksource 'tsc' as unstable because the skew is too large:",
		"[   40.2] fixture kernel: tsc: Marking TSC unstable due to clocksource watchdog",
		"[   41.0] fixture kernel: hrtimer: interrupt took 14848184 ns",
		"[   42.0] fixture kernel: hpet: Lost 3 RTC interrupts",
		"[   60.0] fixture kernel: watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [kworker/0:1:42]",
	}, "\n") + "\n"
	got := journal(a, b)
	require.Len(t, got, 1, "only the soft lockup: %+v", got)
	require.Contains(t, got[0].Example, "soft lockup")
}

func TestBrokenUnitIsNamed(t *testing.T) {
	root := t.TempDir()
	a := fakeRun{slug: "fixture", outcome: runrec.Pass, milestones: cleanMilestones(70, 4), captures: evidence(t, "boot1", nil)}.write(t, root)
	clean := evidence(t, "boot2", nil)
	broken := map[string]string{
		capJournalW: clean[capJournalW] +
			"[   95.123456] bootlab-fixture systemd[1]: pre-nixos.service: Main process exited, code=exited, status=1/FAILURE\n" +
			"[   95.123999] bootlab-fixture systemd[1]: pre-nixos.service: Failed with result 'exit-code'.\n",
		capFailed: "pre-nixos.service loaded failed failed pre-nixos provisioning\n",
		capUnits:  strings.Replace(clean[capUnits], "pre-nixos.service                                                                         loaded    inactive dead", "pre-nixos.service loaded failed failed", 1),
		capKernel: "6.12.0-1-amd64\n",
	}
	b := fakeRun{slug: "fixture", outcome: runrec.Fail, milestones: cleanMilestones(72, 50), captures: evidence(t, "boot2", broken)}.write(t, root)
	d, err := CompareDirs(a, b, Options{})
	require.NoError(t, err)
	require.False(t, d.Empty())
	require.Equal(t, []string{"pre-nixos.service"}, d.Units.Failed)
	require.Len(t, d.Journal, 2, "only the new errors: %+v", d.Journal)
	for _, j := range d.Journal {
		require.Contains(t, j.Example, "pre-nixos.service")
	}
	require.Len(t, d.Milestones, 1)
	require.Equal(t, "ssh", d.Milestones[0].Name, "only the phase that moved")
	require.NotNil(t, d.Kernel)
	require.Equal(t, &Change{A: "fail", B: "fail"}, &Change{A: "fail", B: d.Outcome.B})
	require.Contains(t, d.Captures.Changed, capFailed)
	txt := d.Text()
	for _, want := range []string{"units failed: pre-nixos.service", "ssh", "Failed with result", "kernel:"} {
		require.Contains(t, txt, want)
	}
	var back Diff
	b2, err := json.Marshal(d)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b2, &back))
	require.Equal(t, d.Units.Failed, back.Units.Failed)
}

func TestMissingMilestoneAndNoEvidence(t *testing.T) {
	root := t.TempDir()
	a := fakeRun{slug: "x", outcome: runrec.Pass, milestones: cleanMilestones(70, 4)}.write(t, root)
	b := fakeRun{slug: "x", outcome: runrec.Fail, milestones: cleanMilestones(70, 4)[:3]}.write(t, root)
	d, err := CompareDirs(a, b, Options{})
	require.NoError(t, err)
	var names []string
	for _, m := range d.Milestones {
		require.Nil(t, m.AtB)
		names = append(names, m.Name)
	}
	require.Equal(t, []string{"root_shell", "ssh"}, names)
	require.Len(t, d.Notes, 2, "both runs lack evidence")
}

func TestBlameSlower(t *testing.T) {
	a := map[string]string{capBlame: " 1.500s ssh.service\n  12ms foo.service\n"}
	b := map[string]string{capBlame: "1min 2.5s ssh.service\n 40ms foo.service\n"}
	u := units(a, b, Options{BlameAbs: 5 * time.Second, BlameRatio: 2})
	require.Equal(t, []Slower{{Unit: "ssh.service", A: 1.5, B: 62.5}}, u.Slower)
}

func TestLastPass(t *testing.T) {
	root := t.TempDir()
	ledger := filepath.Join(root, runrec.LedgerFile)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	mk := func(slug string, o runrec.Outcome, h int) string {
		dir := fakeRun{slug: slug, outcome: o, started: t0.Add(time.Duration(h) * time.Hour)}.write(t, root)
		r, err := runrec.Open(dir)
		require.NoError(t, err)
		require.NoError(t, runrec.AppendLedger(ledger, r.LedgerEntry()))
		return dir
	}
	old := mk("fixture", runrec.Pass, 0)
	newest := mk("fixture", runrec.Pass, 1)
	mk("mini", runrec.Pass, 2)
	mk("fixture", runrec.Fail, 3)
	bad := mk("fixture", runrec.Fail, 4)
	mk("fixture", runrec.Pass, 5) // a later pass is not "the last pass" before bad
	got, err := LastPass(ledger, "fixture", bad)
	require.NoError(t, err)
	require.Equal(t, newest, got)
	got, err = LastPass(ledger, "fixture", newest)
	require.NoError(t, err)
	require.Equal(t, old, got, "a pass is compared with the pass before it, not itself or a later one")
	require.NoError(t, os.RemoveAll(newest))
	got, err = LastPass(ledger, "fixture", bad)
	require.NoError(t, err)
	require.Equal(t, old, got, "a pruned run directory is passed over")
	got, err = LastPass(ledger, "nothing", bad)
	require.NoError(t, err)
	require.Empty(t, got)
}

// TestLastPassFindsMovedRuns: a ledger names each run where it was written. In CI the
// notes travel (a shard's artefact downloaded into the report job, the shards merged)
// and the last pass of an earlier night is kept beside the ledger of earlier nights,
// so the recorded paths are gone: the run is found by its name next to the ledger or
// next to the failing run.
func TestLastPassFindsMovedRuns(t *testing.T) {
	shard := filepath.Join(t.TempDir(), "notes")
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	mk := func(o runrec.Outcome, h int) string {
		dir := fakeRun{slug: "standard", outcome: o, started: t0.Add(time.Duration(h) * time.Hour)}.write(t, shard)
		r, err := runrec.Open(dir)
		require.NoError(t, err)
		require.NoError(t, runrec.AppendLedger(filepath.Join(shard, runrec.LedgerFile), r.LedgerEntry()))
		return filepath.Base(dir)
	}
	pass, bad := mk(runrec.Pass, 0), mk(runrec.Fail, 24)

	// The whole notes directory moved (an artefact downloaded elsewhere).
	moved := filepath.Join(t.TempDir(), "merged")
	require.NoError(t, os.Rename(shard, moved))
	got, err := LastPass(filepath.Join(moved, runrec.LedgerFile), "standard", filepath.Join(moved, bad))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(moved, pass), got, "the pass is found next to the ledger")

	// The ledger and last night's pass in a history directory, tonight's run elsewhere.
	history, tonight := t.TempDir(), t.TempDir()
	require.NoError(t, os.Rename(filepath.Join(moved, pass), filepath.Join(history, pass)))
	require.NoError(t, os.Rename(filepath.Join(moved, runrec.LedgerFile), filepath.Join(history, runrec.LedgerFile)))
	require.NoError(t, os.Rename(filepath.Join(moved, bad), filepath.Join(tonight, bad)))
	got, err = LastPass(filepath.Join(history, runrec.LedgerFile), "standard", filepath.Join(tonight, bad))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(history, pass), got)
	// The failing run itself is never its own last pass, wherever it moved.
	got, err = LastPass(filepath.Join(history, runrec.LedgerFile), "standard", filepath.Join(history, pass))
	require.NoError(t, err)
	require.Empty(t, got, "no pass before the first one")
}

func TestPromote(t *testing.T) {
	root := t.TempDir()
	a := fakeRun{slug: "fixture", outcome: runrec.Pass, milestones: cleanMilestones(70, 4), captures: evidence(t, "boot1", nil)}.write(t, root)
	b := fakeRun{slug: "fixture", outcome: runrec.Fail, milestones: cleanMilestones(70, 60),
		captures: evidence(t, "boot2", map[string]string{capFailed: "pre-nixos.service loaded failed failed pre-nixos\n"})}.write(t, root)
	require.NoError(t, os.WriteFile(filepath.Join(b, runrec.SerialLog), []byte("serial bytes\r\n"), 0o644))
	docs := filepath.Join(root, "docs")
	p, err := Promote(b, docs, a)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(docs, "boot-logs", "2026-12-02T05-00-00Z-fixture.log"), p.BootLog)
	require.Equal(t, filepath.Join(docs, "test-reports", "2026-12-02T05-00-00Z-fixture.md"), p.TestReport)
	log, err := os.ReadFile(p.BootLog)
	require.NoError(t, err)
	require.Equal(t, "serial bytes\r\n", string(log), "the serial log is copied byte for byte")
	md, err := os.ReadFile(p.TestReport)
	require.NoError(t, err)
	for _, want := range []string{"Outcome: **fail**", "| ssh |", "failed units", "pre-nixos.service", "## Key captures", "Journal, warnings and worse",
		"## Compared with the last pass", "units failed: pre-nixos.service", "(../boot-logs/2026-12-02T05-00-00Z-fixture.log)"} {
		require.Contains(t, string(md), want)
	}
}

// Two clean boots of one image (a rundiff scenario in make test) differed only in who
// configured the SLAAC address: the kernel (no flags) or networkd ("noprefixroute").
// Which agent won the race is not a change; a static address's flag still is.
func TestSLAACAgentIsNotADifference(t *testing.T) {
	kernel := `[{"ifname":"lan","addr_info":[{"family":"inet6","local":"fec0::5054:ff:fe12:3456","prefixlen":64,"scope":"site","dynamic":true,"mngtmpaddr":true,"valid_life_time":86374,"preferred_life_time":14374}]}]`
	networkd := `[{"ifname":"lan","addr_info":[{"family":"inet6","local":"fec0::5054:ff:fe12:3456","prefixlen":64,"scope":"site","dynamic":true,"mngtmpaddr":true,"noprefixroute":true,"valid_life_time":86378,"preferred_life_time":14378}]}]`
	require.True(t, sameLines(kernel, networkd), "the same SLAAC address from the kernel or from networkd")
	static := `[{"ifname":"lan","addr_info":[{"family":"inet6","local":"fd00::1","prefixlen":64,"scope":"global","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]`
	staticNoRoute := `[{"ifname":"lan","addr_info":[{"family":"inet6","local":"fd00::1","prefixlen":64,"scope":"global","noprefixroute":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]`
	require.False(t, sameLines(static, staticNoRoute), "a configured address's noprefixroute is a change")
	lost := strings.Replace(networkd, `"dynamic":true,`, ``, 1)
	require.False(t, sameLines(kernel, lost), "an address that stopped being dynamic is a change")
}
