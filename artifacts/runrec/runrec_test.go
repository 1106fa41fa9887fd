package runrec

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary re-executes itself as a helper process for the tests that need a
// second process (a writer killed mid-write, ledger writers in other processes).
func TestMain(m *testing.M) {
	switch os.Getenv("RUNREC_HELPER") {
	case "":
		os.Exit(m.Run())
	case "save-loop":
		saveLoop(os.Getenv("RUNREC_DIR"))
	case "create-run":
		r, err := Create(os.Getenv("RUNREC_NOTES"), "victim", time.Now())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(r.Dir)
		time.Sleep(time.Hour) // until killed
		os.Exit(0)
	case "ledger":
		n, _ := strconv.Atoi(os.Getenv("RUNREC_N"))
		if err := ledgerWriter(os.Getenv("RUNREC_LEDGER"), os.Getenv("RUNREC_WRITER"), n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(3)
}

var t0 = time.Date(2026, 11, 23, 1, 2, 3, 0, time.UTC)

func TestCreateNamesAndLayout(t *testing.T) {
	root := t.TempDir()
	r, err := Create(root, "boot/iso smoke test!", t0)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "2026-11-23T01-02-03Z-boot-iso-smoke-test")
	if r.Dir != want {
		t.Fatalf("dir = %s, want %s", r.Dir, want)
	}
	for _, sub := range []string{CapturesDir, DiagnosticsDir} {
		if st, err := os.Stat(r.Path(sub)); err != nil || !st.IsDir() {
			t.Fatalf("%s missing: %v", sub, err)
		}
	}
	m, err := ReadMetadata(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Schema != SchemaVersion || m.Outcome != Running || !m.Started.Equal(t0) || m.Slug != "boot-iso-smoke-test" {
		t.Fatalf("initial metadata wrong: %+v", m)
	}
	if r.Path("captures/index.md") != filepath.Join(r.Dir, "captures", "index.md") {
		t.Fatalf("Path joined wrongly: %s", r.Path("captures/index.md"))
	}
	if _, err := os.Stat(r.Path(".preflight")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("preflight probe left behind: %v", err)
	}
}

func TestSanitizeSlug(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "run",
		"///":                          "run",
		"TestBoot/clean_disk":          "TestBoot-clean_disk",
		"a  b":                         "a-b",
		"--x--":                        "x",
		"../../etc/passwd":             "etc-passwd",
		"ünïcode":                      "n-code",
		strings.Repeat("abcdefgh", 20): strings.Repeat("abcdefgh", 8),
	} {
		if got := SanitizeSlug(in); got != want {
			t.Errorf("SanitizeSlug(%q) = %q, want %q", in, got, want)
		}
	}
}

// Parallel tests start runs in the same second; each must get its own directory (the
// Python harness's one-second names collided).
func TestCreateUniqueUnderConcurrency(t *testing.T) {
	root := t.TempDir()
	const n = 24
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			r, err := Create(root, "same", t0)
			errs[i] = err
			if err == nil {
				dirs[i] = filepath.Base(r.Dir)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	seen := map[string]bool{}
	for i := range dirs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[dirs[i]] {
			t.Fatalf("directory %s handed out twice", dirs[i])
		}
		seen[dirs[i]] = true
	}
	base := "2026-11-23T01-02-03Z-same"
	if !seen[base] {
		t.Fatalf("first run should have the bare name %s; got %v", base, seen)
	}
	for k := 2; k <= n; k++ {
		if !seen[fmt.Sprintf("%s-%d", base, k)] {
			t.Fatalf("missing %s-%d; got %v", base, k, seen)
		}
	}
}

func TestCreateUnwritableNotesIsClearError(t *testing.T) {
	// A regular file where the notes directory should be: unwritable even for root,
	// which is who runs CI here.
	f := filepath.Join(t.TempDir(), "notes")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Create(f, "x", t0)
	if err == nil || !strings.Contains(err.Error(), "BOOTLAB_NOTES") || !strings.Contains(err.Error(), f) {
		t.Fatalf("want an error naming the notes path and how to change it, got %v", err)
	}
}

func TestCreateFullDiskIsClearError(t *testing.T) {
	old := MinFreeBytes
	MinFreeBytes = 1 << 62
	defer func() { MinFreeBytes = old }()
	root := t.TempDir()
	_, err := Create(root, "x", t0)
	if err == nil || !strings.Contains(err.Error(), "free") {
		t.Fatalf("want a free-space error, got %v", err)
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 0 {
		t.Fatalf("a refused run must not leave a directory: %v", ents)
	}
}

func TestCreateRefusesEmptyNotesRoot(t *testing.T) {
	_, err := Create("", "x", time.Now())
	if err == nil || !strings.Contains(err.Error(), "no notes directory") {
		t.Fatalf("Create with no notes root: %v, want a refusal", err)
	}
}

func TestMilestonesAndScenarios(t *testing.T) {
	r, err := Create(t.TempDir(), "m", t0)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Milestone(MilestoneSpawn, t0.Add(100*time.Millisecond)))
	must(r.Milestone(MilestoneLoginPrompt, t0.Add(5*time.Second)))
	// Reported late but happened earlier: sorted into place.
	must(r.Milestone(MilestoneFirstOutput, t0.Add(2*time.Second)))
	// A second login prompt does not move the first.
	must(r.Milestone(MilestoneLoginPrompt, t0.Add(50*time.Second)))
	must(r.Span(MilestoneShutdown, t0.Add(60*time.Second), t0.Add(63*time.Second)))
	must(r.Scenario(Scenario{Name: "boots", Outcome: Fail, Error: "x"}))
	must(r.Scenario(Scenario{Name: "boots", Outcome: Pass, Duration: Seconds(3 * time.Second)}))
	must(r.SetAccel("tcg", "kvm probe: guest hung"))
	must(r.SetShell(Shell{UID: 0, Escalation: "su -", Transport: "virtio-serial", ChannelStatus: "in use"}))

	m, err := ReadMetadata(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ms := range m.Milestones {
		names = append(names, ms.Name)
	}
	if strings.Join(names, ",") != "spawn,first_output,login_prompt,shutdown" {
		t.Fatalf("milestone order %v", names)
	}
	lp, _ := m.Milestone(MilestoneLoginPrompt)
	if lp.At.D() != 5*time.Second || lp.Duration.D() != 3*time.Second {
		t.Fatalf("login_prompt = %+v, want at 5s lasting 3s", lp)
	}
	sd, _ := m.Milestone(MilestoneShutdown)
	if sd.At.D() != 63*time.Second || sd.Duration.D() != 3*time.Second {
		t.Fatalf("shutdown = %+v", sd)
	}
	if len(m.Scenarios) != 1 || m.Scenarios[0].Outcome != Pass {
		t.Fatalf("scenario not replaced: %+v", m.Scenarios)
	}
	if m.Accel.Name != "tcg" || m.Accel.Reason == "" {
		t.Fatalf("accel %+v", m.Accel)
	}
	if m.Shell == nil || m.Shell.Transport != "virtio-serial" || m.Shell.Escalation != "su -" {
		t.Fatalf("shell %+v", m.Shell)
	}
	raw, _ := os.ReadFile(r.Path(MetadataFile))
	if !strings.Contains(string(raw), `"at": 5.000`) {
		t.Fatalf("milestone offsets should be seconds in JSON:\n%s", raw)
	}
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	r, err := Create(t.TempDir(), "c", t0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := r.Scenario(Scenario{Name: fmt.Sprintf("s%02d", i), Outcome: Pass}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	m, err := ReadMetadata(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Scenarios) != 20 {
		t.Fatalf("saved %d scenarios, want 20", len(m.Scenarios))
	}
}

// A write that fails halfway (disk full, I/O error) leaves the previous metadata.json
// in place and no temporary file behind.
func TestSaveFailingWriterKeepsPreviousMetadata(t *testing.T) {
	r, err := Create(t.TempDir(), "crash", t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetAccel("tcg", "first"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(r.Path(MetadataFile))
	r.writeFile = func(f *os.File, data []byte) error {
		if _, err := f.Write(data[:len(data)/2]); err != nil {
			return err
		}
		return errors.New("injected: device full")
	}
	err = r.SetAccel("kvm", "second")
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("want the injected error, got %v", err)
	}
	after, _ := os.ReadFile(r.Path(MetadataFile))
	if string(after) != string(before) {
		t.Fatalf("metadata.json changed by a failed write:\n%s", after)
	}
	var m Metadata
	if err := json.Unmarshal(after, &m); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(r.Dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
	// Once the disk recovers the in-memory state (kvm) is what gets saved.
	r.writeFile = nil
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	if m, _ := ReadMetadata(r.Dir); m.Accel.Name != "kvm" {
		t.Fatalf("recovered save lost the update: %+v", m.Accel)
	}
}

// saveLoop is the helper process: rewrite a large metadata.json forever, slowly, in
// chunks, so that a SIGKILL from the parent lands in the middle of a write.
func saveLoop(dir string) {
	r, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	r.writeFile = func(f *os.File, data []byte) error {
		// Tell the parent a write has begun, so its kill lands inside one even when
		// the race detector makes encoding far slower than writing.
		os.Stdout.Write([]byte("w"))
		for len(data) > 0 {
			n := min(len(data), 8<<10)
			if _, err := f.Write(data[:n]); err != nil {
				return err
			}
			data = data[n:]
			time.Sleep(time.Millisecond)
		}
		return nil
	}
	argv := make([]string, 20000)
	for i := range argv {
		argv[i] = fmt.Sprintf("-arg%06d", i)
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		_ = r.Update(func(m *Metadata) {
			m.QEMU.Argv = argv
			m.QEMU.PID = i
		})
	}
}

func TestSaveKilledMidWriteLeavesValidMetadata(t *testing.T) {
	r, err := Create(t.TempDir(), "kill", t0)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	killedMidWrite := 0
	for round := 0; round < 6; round++ {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "RUNREC_HELPER=save-loop", "RUNREC_DIR="+r.Dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Skip "ready\n", let a few saves complete, then kill a few ms into a write
		// (each takes ~40 ms: 8 KiB chunks with a 1 ms pause).
		br := bufio.NewReader(out)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("helper did not start: %v", err)
		}
		for k := 0; k < 1+rng.Intn(3); k++ {
			if _, err := br.ReadByte(); err != nil {
				t.Fatalf("helper stopped writing: %v", err)
			}
		}
		time.Sleep(time.Duration(rng.Intn(15)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()

		ents, _ := os.ReadDir(r.Dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "."+MetadataFile+".tmp-") {
				killedMidWrite++
				_ = os.Remove(filepath.Join(r.Dir, e.Name()))
			}
		}
		m, err := ReadMetadata(r.Dir)
		if err != nil {
			t.Fatalf("round %d: metadata.json invalid after SIGKILL: %v", round, err)
		}
		if n := len(m.QEMU.Argv); n != 0 && n != 20000 {
			t.Fatalf("round %d: metadata holds a partial argv (%d)", round, len(m.QEMU.Argv))
		}
	}
	if killedMidWrite == 0 {
		t.Fatal("no kill landed during a write; the test proved nothing (tune the helper)")
	}
	t.Logf("%d of 6 kills landed mid-write", killedMidWrite)
}

func TestDiagnosticsNumberedUniquelyAndCatalogued(t *testing.T) {
	r, err := Create(t.TempDir(), "d", t0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	paths := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := r.Diagnostic("serial log tail", fmt.Sprintf("body %d", i))
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		}(i)
	}
	wg.Wait()
	sort.Strings(paths)
	for i, p := range paths {
		want := fmt.Sprintf("%02d-serial-log-tail.txt", i+1)
		if filepath.Base(p) != want {
			t.Fatalf("diagnostic %d named %s, want %s", i, filepath.Base(p), want)
		}
		b, _ := os.ReadFile(p)
		if !strings.HasPrefix(string(b), "body ") || !strings.HasSuffix(string(b), "\n") {
			t.Fatalf("%s content %q", p, b)
		}
	}
	m, _ := ReadMetadata(r.Dir)
	if len(m.Artefacts) != n {
		t.Fatalf("catalogue has %d diagnostics, want %d", len(m.Artefacts), n)
	}
	for _, a := range m.Artefacts {
		if !strings.HasPrefix(a.Path, "diagnostics/") || len(a.SHA256) != 64 || a.Description != "diagnostic: serial-log-tail" {
			t.Fatalf("bad catalogue entry %+v", a)
		}
	}
	// A reopened run (bootlab capture DIR) continues the numbering.
	r2, err := Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r2.Diagnostic("after", "x")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != fmt.Sprintf("%02d-after.txt", n+1) {
		t.Fatalf("reopened run numbered %s", p)
	}
}

func TestFailureBodyAndTail(t *testing.T) {
	dir := t.TempDir()
	serial := filepath.Join(dir, "serial.log")
	var sb strings.Builder
	for i := 1; i <= 1000; i++ {
		fmt.Fprintf(&sb, "\x1b[1mline %d\x1b[0m\r\n", i)
	}
	if err := os.WriteFile(serial, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sgr := regexp.MustCompile("\x1b\\[[0-9;]*m|\r")
	tail, err := TailFile(serial, 3, func(b []byte) []byte { return sgr.ReplaceAll(b, nil) })
	if err != nil {
		t.Fatal(err)
	}
	if tail != "line 998\nline 999\nline 1000\n" {
		t.Fatalf("tail = %q", tail)
	}
	body := FailureBody(Failure{
		Summary: "login prompt not seen", Context: "waited 120s for `login:`",
		SerialTail: tail, QEMUExit: "signal: killed", At: t0,
	})
	for _, want := range []string{
		"Failure: login prompt not seen\n", "Captured at: 2026-11-23T01:02:03Z\n", "QEMU: signal: killed\n",
		"== Failure context ==\nwaited 120s", "== Serial log tail ==\nline 998\n", "== Transcript ==\n<none recorded>\n",
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("body lacks %q:\n%s", want, body)
		}
	}
}

func TestCatalogue(t *testing.T) {
	r, err := Create(t.TempDir(), "cat", t0)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		SerialLog: "hello\n", HarnessLog: "{}\n", "captures/index.md": "# c\n",
		"captures/systemd/list-jobs.txt": "No jobs\n", "report.html": "<html>",
	}
	for rel, body := range files {
		p := r.Path(rel)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Describe("report.html", "the report, rendered"); err != nil {
		t.Fatal(err)
	}
	cat, err := r.Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Artefact{}
	for _, a := range cat {
		got[a.Path] = a
	}
	if len(got) != len(files) {
		t.Fatalf("catalogue %v, want exactly %d files (no metadata.json, no dot files)", cat, len(files))
	}
	if a := got["serial.log"]; a.Size != 6 || a.SHA256 != "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" {
		t.Fatalf("serial.log entry %+v", a)
	}
	if got["report.html"].Description != "the report, rendered" {
		t.Fatalf("Describe lost: %+v", got["report.html"])
	}
	if got["captures/systemd/list-jobs.txt"].Description != "capture" {
		t.Fatalf("capture description %+v", got["captures/systemd/list-jobs.txt"])
	}
	if err := r.Finish(Pass, "", t0.Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	m, _ := ReadMetadata(r.Dir)
	if m.Outcome != Pass || m.Ended == nil || m.Ended.Sub(m.Started) != 90*time.Second || len(m.Artefacts) != len(files) {
		t.Fatalf("finished metadata %+v", m)
	}
}

func TestOpenAppend(t *testing.T) {
	r, err := Create(t.TempDir(), "append", t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one\n", "two\n"} {
		f, err := r.OpenAppend("captures/x/y.txt")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	b, _ := os.ReadFile(r.Path("captures/x/y.txt"))
	if string(b) != "one\ntwo\n" {
		t.Fatalf("got %q", b)
	}
}
