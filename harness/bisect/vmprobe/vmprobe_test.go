package vmprobe

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/bisect"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
	"github.com/bootlab/bootlab/harness/vm"
)

func TestMain(m *testing.M) {
	// The host-command test uses this binary as its predicate command: no tool
	// on the host is assumed besides what the test built.
	if os.Getenv(helperEnv) == "1" {
		os.Exit(consoleHelper())
	}
	lab.HandleSignals()
	os.Exit(m.Run())
}

const helperEnv = "BOOTLAB_VMPROBE_HELPER"

// consoleHelper is a host predicate as a user would write one: it checks the SSH port
// is forwarded, then types into the console socket and judges what the guest answers.
// Exit 0 good, 1 bad, 125 skip (as in git bisect run).
func consoleHelper() int {
	port := os.Getenv("BOOTLAB_SSH_PORT")
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
	if err != nil {
		fmt.Println("ssh port not forwarded:", err)
		return 125
	}
	c.Close()
	if os.Getenv("BOOTLAB_CANDIDATE") == "" || os.Getenv("BOOTLAB_KERNEL") == "" {
		fmt.Println("candidate not described in the environment")
		return 125
	}
	con, err := net.Dial("unix", os.Getenv("BOOTLAB_CONSOLE_SOCKET"))
	if err != nil {
		fmt.Println("console socket:", err)
		return 125
	}
	defer con.Close()
	_ = con.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := con.Write([]byte("echo feature=$(cat /etc/bootlab-feature)\n")); err != nil {
		fmt.Println("typing:", err)
		return 125
	}
	re := regexp.MustCompile(`feature=(ok|broken)\b`)
	var seen []byte
	buf := make([]byte, 4096)
	for {
		n, err := con.Read(buf)
		seen = append(seen, buf[:n]...)
		if m := re.FindSubmatch(seen); m != nil {
			fmt.Printf("guest says feature=%s\n", m[1])
			if string(m[1]) == "ok" {
				return 0
			}
			return 1
		}
		if err != nil {
			fmt.Printf("no answer on the console (%v): %q\n", err, seen)
			return 125
		}
	}
}

var scaled = labtest.Scaled

// syntheticScript exercises every kind of step against the real console: a send whose
// reply only the shell can compute (the typed text does not contain it), the image's
// version, and the feature file the regression breaks.
const syntheticScript = `# synthetic series: the feature file says ok until the regression
send echo bisect-$((6*7))
expect bisect-42 30s
assert-output "cat /etc/mini-version" ^v[1-8]\n$
run grep -qx ok /etc/bootlab-feature
`

// TestBisectSyntheticMiniSeries is issue 6's VM test: eight versions of the mini image
// on one kernel, the feature file broken from a version the test picks at random, and
// bisect.Run with the VM prober and an expect script finds that version within
// ceil(log2 8)+2 probes, every probe leaving a lab run directory.
func TestBisectSyntheticMiniSeries(t *testing.T) {
	vmgate.VM(t)
	seed := time.Now().UnixNano()
	if s := os.Getenv("BOOTLAB_BISECT_SEED"); s != "" {
		_, err := fmt.Sscan(s, &seed)
		require.NoError(t, err)
	}
	firstBad := 1 + rand.New(rand.NewSource(seed)).Intn(7) // v1 must stay good
	t.Logf("seed %d: first bad version v%d (BOOTLAB_BISECT_SEED=%d reproduces)", seed, firstBad+1, seed)

	ctx, cancel := context.WithTimeout(context.Background(), scaled(10*time.Minute))
	defer cancel()
	var cands []bisect.Candidate
	kernels := map[string]bool{}
	for i := 0; i < 8; i++ {
		feature := "ok\n"
		if i >= firstBad {
			feature = "broken\n"
		}
		img, m, err := lab.MiniImage(ctx, labtest.Cache(), images.MiniSpec{
			Version: fmt.Sprintf("v%d", i+1),
			Files:   map[string]images.File{"/etc/bootlab-feature": {Content: feature}},
		})
		require.NoError(t, err, "building mini v%d", i+1)
		kernels[m.KernelVersion] = true
		cands = append(cands, bisect.Candidate{Name: m.Version, Kernel: img.Kernel, Initrd: img.Initrd, Append: img.Append})
	}
	require.Len(t, kernels, 1, "the series shares one kernel")
	for i := 1; i < len(cands); i++ {
		require.NotEqual(t, cands[0].Initrd, cands[i].Initrd, "every version has its own initramfs")
	}

	script, err := bisect.ParseScript(strings.NewReader(syntheticScript), "synthetic.expect")
	require.NoError(t, err)
	pred := &bisect.Predicate{Kind: bisect.PredicateScript, ScriptPath: "synthetic.expect", ScriptText: syntheticScript}
	p := &Prober{Config: labtest.Config(), LoginTimeout: scaled(2 * time.Minute), MemoryMB: 256}
	require.NoError(t, p.UsePredicate(pred))
	require.Len(t, script.Steps, 4)

	dir := filepath.Join(labtest.NotesRoot(), fmt.Sprintf("bisect-synthetic-%d", seed))
	t.Logf("bisect directory: %s", dir)
	start := time.Now()
	res, err := bisect.Run(ctx, bisect.Config{Candidates: cands, Dir: dir, Predicate: pred, ProbeTimeout: scaled(5 * time.Minute)}, p)
	require.NoError(t, err)
	t.Logf("bisection took %s: %s", time.Since(start).Round(time.Second), res.Message)
	for _, pr := range res.Probes {
		t.Logf("probe %s: %s in %s (%s) %s", pr.Name, pr.Verdict, pr.Duration.Round(time.Millisecond), pr.RunDir, pr.Reason)
	}

	require.Equal(t, bisect.StatusFound, res.Status)
	require.Equal(t, firstBad, res.FirstBad, "first bad version")
	require.Equal(t, firstBad-1, res.LastGood)
	maxProbes := int(math.Ceil(math.Log2(8))) + 2
	require.LessOrEqual(t, len(res.Probes), maxProbes, "probes")
	for _, pr := range res.Probes {
		want := bisect.Good
		if pr.Index >= firstBad {
			want = bisect.Bad
		}
		require.Equal(t, want, pr.Verdict, "verdict of %s: %s", pr.Name, pr.Reason)
		if want == bisect.Bad {
			require.Contains(t, pr.Reason, "grep -qx ok /etc/bootlab-feature", "a bad verdict names the failing step")
		}
		// The evidence: the lab's run directory, relative to the bisect directory,
		// with a booted-and-logged-in record and the probe's outcome next to it.
		require.False(t, filepath.IsAbs(pr.RunDir), "run dir %s is relative to the bisect directory", pr.RunDir)
		labDir := filepath.Join(dir, pr.RunDir)
		md, err := runrec.ReadMetadata(labDir)
		require.NoError(t, err, "metadata of %s", pr.Name)
		_, ok := md.Milestone("root_shell")
		require.True(t, ok, "%s reached a root shell", pr.Name)
		// The run record says what the predicate said: a bad candidate's run is bad,
		// with the failing step, not a pass.
		require.NotNil(t, md.Verdict, "%s: the predicate's verdict is in the run record", pr.Name)
		require.Equal(t, string(want), md.Verdict.Verdict)
		if want == bisect.Bad {
			require.Equal(t, runrec.Bad, md.Outcome, "%s: a bad candidate's run is not a pass", pr.Name)
			require.NotEmpty(t, md.Verdict.FailedStep)
		} else {
			require.Equal(t, runrec.Pass, md.Outcome, "%s: the lab run itself worked", pr.Name)
		}
		// Its verdict is in and nothing is kept: sync and quit, no waiting on the guest.
		sd, ok := md.Milestone(runrec.MilestoneShutdown)
		require.True(t, ok)
		require.Less(t, sd.Duration.D(), 3*time.Second, "%s: the stop after the verdict (%s)", pr.Name, sd.Note)
		b, err := os.ReadFile(filepath.Join(filepath.Dir(labDir), "outcome.json"))
		require.NoError(t, err)
		var oc struct{ Verdict bisect.Verdict }
		require.NoError(t, json.Unmarshal(b, &oc))
		require.Equal(t, want, oc.Verdict)
		serial, err := os.ReadFile(filepath.Join(labDir, vm.SerialLog))
		require.NoError(t, err)
		require.Contains(t, string(serial), "bisect-42", "%s: the expect matched real console output", pr.Name)
		requireReaped(t, labDir)
	}
	_, err = os.Stat(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
}

// TestMissingImageIsSkipNotBad checks the infrastructure rule without a boot: a
// candidate whose kernel file is gone is skipped, with a lab-independent reason.
func TestMissingImageIsSkipNotBad(t *testing.T) {
	vmgate.VM(t)
	p := &Prober{}
	require.NoError(t, p.UsePredicate(&bisect.Predicate{Kind: bisect.PredicateCommand, Command: "true"}))
	runDir := t.TempDir()
	out, err := p.Probe(context.Background(), bisect.Candidate{Name: "gone", Kernel: filepath.Join(runDir, "no-such-vmlinuz")}, 0, runDir)
	require.NoError(t, err)
	require.Equal(t, bisect.Skip, out.Verdict)
	require.Contains(t, out.Reason, "image file missing")
}

func TestCandidateProfilesAreChecked(t *testing.T) {
	p := &Prober{}
	require.NoError(t, p.CheckCandidates([]bisect.Candidate{{Name: "a", ISO: "/a.iso", Profile: "nixos"}, {Name: "b", ISO: "/b.iso"}}))
	require.ErrorContains(t, p.CheckCandidates([]bisect.Candidate{{Name: "a", ISO: "/a.iso", Profile: "nixus"}}), `candidate a: unknown image profile "nixus"`)
}

func TestScenarioPredicateChecksTheName(t *testing.T) {
	p := &Prober{ScenarioPkg: "../../../scenarios"}
	require.NoError(t, p.UsePredicate(&bisect.Predicate{Kind: bisect.PredicateScenario, Scenario: "TestCleanDisk"}))
	err := p.UsePredicate(&bisect.Predicate{Kind: bisect.PredicateScenario, Scenario: "TestNoSuchScenario"})
	require.ErrorContains(t, err, "no scenario TestNoSuchScenario")
	err = p.UsePredicate(&bisect.Predicate{Kind: bisect.PredicateScenario, Scenario: "Test.*"})
	require.ErrorContains(t, err, "want a test function name")
}

func TestDemoKernels(t *testing.T) {
	series := []string{"linux-image-6.1.0-47-amd64", "linux-image-6.1.0-48-amd64", "linux-image-6.1.0-56-amd64",
		"linux-image-6.12.100+deb12-amd64", "linux-image-6.12.111+deb12-amd64", "linux-image-6.12.117+deb12-amd64"}
	got, err := demoKernels(series)
	require.NoError(t, err)
	require.Equal(t, []string{"linux-image-6.1.0-47-amd64", "linux-image-6.1.0-56-amd64",
		"linux-image-6.12.100+deb12-amd64", "linux-image-6.12.117+deb12-amd64"}, got)
	_, err = demoKernels(series[3:])
	require.ErrorContains(t, err, "only the 6.12 line")
}

// requireReaped checks by pid (from the run directory's pidfile) that QEMU is gone.
func requireReaped(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, vm.PIDFile))
	require.NoError(t, err)
	var pid int
	_, err = fmt.Sscan(strings.TrimSpace(string(b)), &pid)
	require.NoError(t, err)
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "QEMU pid %d of %s is still running", pid, dir)
}

func TestReportPathIsRelativeToTheBisectDir(t *testing.T) {
	t.Chdir(t.TempDir())
	abs, err := filepath.Abs("b/probes/000-v1-a0/run")
	require.NoError(t, err)
	// The engine hands a relative probe directory when --dir is relative, while
	// the lab's run directory is always absolute.
	require.Equal(t, filepath.Join("probes", "000-v1-a0", "run"), reportPath("b/probes/000-v1-a0", abs))
	require.Equal(t, "/x/run", reportPath("/elsewhere/000-v1-a0", "/x/run"), "outside the engine layout the path stays absolute")
}

// TestScenarioVerdicts runs the scenario predicate against stand-in scenario packages:
// pass is good, failure is bad, a failure whose VM never got a root shell and a
// package that does not build are skips.
func TestScenarioVerdicts(t *testing.T) {
	vmgate.VM(t)
	kern := bisect.Candidate{Name: "k", Kernel: "/k/vmlinuz", Initrd: "/k/initrd", Append: "console=ttyS0 x=1"}
	iso := bisect.Candidate{Name: "i", ISO: "/i/a.iso"}
	foreign := bisect.Candidate{Name: "n", ISO: "/i/nixos.iso", Profile: "nixos", Entry: "boot-serial", Boot: "direct"}
	for _, tc := range []struct {
		pkg, name string
		cand      bisect.Candidate
		want      bisect.Verdict
		reason    string
	}{
		{"fakescenarios", "TestGood", kern, bisect.Good, "passed"},
		{"fakescenarios", "TestGoodISO", iso, bisect.Good, "passed"},
		{"fakescenarios", "TestForeignISO", foreign, bisect.Good, "passed"},
		{"fakescenarios", "TestBad", kern, bisect.Bad, "behaviour under test is broken"},
		{"fakescenarios", "TestNoBoot", kern, bisect.Skip, "never reached a root shell"},
		{"brokenscenarios", "TestAnything", kern, bisect.Skip, "did not run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Prober{ScenarioPkg: "./testdata/" + tc.pkg}
			require.NoError(t, p.UsePredicate(&bisect.Predicate{Kind: bisect.PredicateScenario, Scenario: tc.name}))
			runDir := t.TempDir()
			out, err := p.Probe(context.Background(), tc.cand, 0, runDir)
			require.NoError(t, err)
			require.Equal(t, tc.want, out.Verdict, out.Reason)
			require.Contains(t, out.Reason, tc.reason)
			log, err := os.ReadFile(filepath.Join(runDir, "scenario.log"))
			require.NoError(t, err)
			require.NotEmpty(t, log)
			_, err = os.Stat(filepath.Join(runDir, "outcome.json"))
			require.NoError(t, err)
		})
	}
}

// TestHostCommandPredicate boots a good and a bad mini image and judges them with a
// host command that talks to the guest through BOOTLAB_CONSOLE_SOCKET.
func TestHostCommandPredicate(t *testing.T) {
	vmgate.VM(t)
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	self, err := os.Executable()
	require.NoError(t, err)
	p := &Prober{Config: labtest.Config(), LoginTimeout: scaled(2 * time.Minute), MemoryMB: 256}
	require.NoError(t, p.UsePredicate(&bisect.Predicate{Kind: bisect.PredicateCommand, Command: helperEnv + "=1 " + self}))
	for _, feature := range []string{"ok", "broken"} {
		img, m, err := lab.MiniImage(ctx, labtest.Cache(), images.MiniSpec{Version: "cmd-" + feature,
			Files: map[string]images.File{"/etc/bootlab-feature": {Content: feature + "\n"}}})
		require.NoError(t, err)
		c := bisect.Candidate{Name: m.Version, Kernel: img.Kernel, Initrd: img.Initrd, Append: img.Append}
		runDir := t.TempDir()
		out, err := p.Probe(ctx, c, 0, runDir)
		require.NoError(t, err)
		pl, _ := os.ReadFile(filepath.Join(runDir, "predicate.log"))
		want := bisect.Good
		if feature == "broken" {
			want = bisect.Bad
		}
		require.Equal(t, want, out.Verdict, "%s: %s; predicate.log:\n%s", c.Name, out.Reason, pl)
		require.Contains(t, string(pl), "guest says feature="+feature)
		labDir := out.RunDir
		require.True(t, filepath.IsAbs(labDir), "outside the engine layout the lab dir is absolute: %s", labDir)
		require.Equal(t, runDir, filepath.Dir(labDir), "the lab run directory is inside the probe directory")
		_, err = os.Lstat(filepath.Join(labDir, lab.ConsoleSocket))
		require.True(t, os.IsNotExist(err), "the console socket link is gone after the probe")
		requireReaped(t, labDir)
	}
}

// TestNoLoginIsSkip boots an image that never offers a login prompt: the probe must say
// skip (the image could not be tested), close the lab and leave the login diagnostic.
func TestNoLoginIsSkip(t *testing.T) {
	vmgate.VM(t)
	ctx, cancel := context.WithTimeout(context.Background(), scaled(5*time.Minute))
	defer cancel()
	img, m, err := lab.MiniImage(ctx, labtest.Cache(), images.MiniSpec{Version: "no-getty",
		Init: "#!/bin/sh\n. /etc/rc.mini\necho 'this image never starts a getty'\nexec sleep 100000\n"})
	require.NoError(t, err)
	// TCG: this test is about the login, not worth a 20 s KVM probe of a new kernel path.
	p := &Prober{Config: labtest.Config(), LoginTimeout: scaled(20 * time.Second), MemoryMB: 256, Accel: "tcg"}
	require.NoError(t, p.UsePredicate(&bisect.Predicate{Kind: bisect.PredicateScript, ScriptPath: "x", ScriptText: "run true\n"}))
	runDir := t.TempDir()
	out, err := p.Probe(ctx, bisect.Candidate{Name: m.Version, Kernel: img.Kernel, Initrd: img.Initrd, Append: img.Append}, 0, runDir)
	require.NoError(t, err)
	require.Equal(t, bisect.Skip, out.Verdict, out.Reason)
	require.Contains(t, out.Reason, "logging in to no-getty")
	require.NotContains(t, out.Reason, "\n", "a reason is one line; the console tail is in the run directory")
	t.Logf("skip reason: %s", out.Reason)
	md, err := runrec.ReadMetadata(out.RunDir)
	require.NoError(t, err)
	require.Equal(t, runrec.Fail, md.Outcome, "the lab run records the failed login")
	_, ok := md.Milestone("root_shell")
	require.False(t, ok)
	diags, err := filepath.Glob(filepath.Join(out.RunDir, "diagnostics", "*login*"))
	require.NoError(t, err)
	require.NotEmpty(t, diags, "a login diagnostic explains the skip")
	serial, err := os.ReadFile(filepath.Join(out.RunDir, vm.SerialLog))
	require.NoError(t, err)
	require.Contains(t, string(serial), "this image never starts a getty")
	requireReaped(t, out.RunDir)
}
