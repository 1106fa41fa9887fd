package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// behaviour is what the fake guest does for a command containing match.
type behaviour struct {
	match  string
	out    string
	status int
	err    error
	hang   bool // block until the context ends
}

// fakeRunner plays a guest: the first behaviour whose match is in the (unwrapped)
// command decides; anything else prints "ran: <cmd>" and exits 0.
type fakeRunner struct {
	mu    sync.Mutex
	rules []behaviour
	calls []string // unwrapped commands, in order
	raw   []string // as received
}

func unwrap(t testing.TB, cmd string) string {
	t.Helper()
	pre, suf := "( "+envPrefix, " ) 2>&1 </dev/null"
	if !strings.HasPrefix(cmd, pre) || !strings.HasSuffix(cmd, suf) {
		t.Errorf("command not wrapped: %q", cmd)
		return cmd
	}
	return strings.TrimSuffix(strings.TrimPrefix(cmd, pre), suf)
}

func (f *fakeRunner) exec(t testing.TB) Runner {
	return runnerFunc(func(ctx context.Context, cmd string) ([]byte, int, error) {
		inner := unwrap(t, cmd)
		f.mu.Lock()
		f.calls = append(f.calls, inner)
		f.raw = append(f.raw, cmd)
		f.mu.Unlock()
		if _, ok := ctx.Deadline(); !ok {
			t.Errorf("capture %q runs without a deadline", inner)
		}
		for _, b := range f.rules {
			if !strings.Contains(inner, b.match) {
				continue
			}
			if b.hang {
				<-ctx.Done()
				return []byte(b.out), 0, fmt.Errorf("running %q: %w", inner, ctx.Err())
			}
			return []byte(b.out), b.status, b.err
		}
		return []byte("ran: " + inner + "\n"), 0, nil
	})
}

type runnerFunc func(ctx context.Context, cmd string) ([]byte, int, error)

func (f runnerFunc) Exec(ctx context.Context, cmd string) ([]byte, int, error) { return f(ctx, cmd) }

// short gives every item a small timeout so hanging captures end quickly in tests.
func short(sets []Set, d time.Duration) []Set {
	for i := range sets {
		items := append([]Item(nil), sets[i].Items...)
		for j := range items {
			items[j].Timeout = d
		}
		sets[i].Items = items
	}
	return sets
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func entry(t *testing.T, idx Index, name string) Entry {
	t.Helper()
	for _, e := range idx.Entries {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no entry %q in %+v", name, idx.Entries)
	return Entry{}
}

func TestSystemdSetWithFailingAndHangingCaptures(t *testing.T) {
	f := &fakeRunner{rules: []behaviour{
		{match: "journalctl -u 'pre-nixos.service'", out: "partial journal\n", hang: true},
		{match: "list-dependencies", out: "Unit pre-nixos.service could not be found.\n", status: 4},
		{match: "list-jobs", out: "JOB UNIT TYPE STATE\n1 pre-nixos.service start running\n"},
	}}
	dir := filepath.Join(t.TempDir(), "captures")
	start := time.Now()
	idx, err := Capture(context.Background(), f.exec(t), dir, short([]Set{Systemd("pre-nixos")}, 100*time.Millisecond)...)
	if err != nil {
		t.Fatalf("Capture: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %s: the hanging capture was not bounded", el)
	}
	wantCalls := []string{
		"systemctl list-jobs --no-pager -l",
		"systemctl list-units --failed --all --no-pager -l",
		"systemctl status --no-pager -l 'pre-nixos.service'",
		"journalctl -u 'pre-nixos.service' -b --no-pager -o short-monotonic -n 400",
		"systemctl list-dependencies --no-pager -l 'pre-nixos.service'",
	}
	if fmt.Sprint(f.calls) != fmt.Sprint(wantCalls) {
		t.Fatalf("calls\n%q\nwant\n%q", f.calls, wantCalls)
	}
	if got := readFile(t, filepath.Join(dir, "systemd-list-jobs.txt")); got != "JOB UNIT TYPE STATE\n1 pre-nixos.service start running\n" {
		t.Fatalf("list-jobs file %q", got)
	}
	hung := entry(t, idx, "journal-pre-nixos")
	if !hung.TimedOut || hung.Status != -1 || !strings.Contains(hung.Err, "timed out after 100ms") || hung.Skipped {
		t.Fatalf("hung entry %+v", hung)
	}
	if hung.Duration < 100*time.Millisecond {
		t.Fatalf("hung capture ended after %s, before its timeout", hung.Duration)
	}
	if got := readFile(t, filepath.Join(dir, "journal-pre-nixos.txt")); got != "partial journal\n" {
		t.Fatalf("partial output of the hung capture not kept: %q", got)
	}
	failed := entry(t, idx, "systemd-dependencies-pre-nixos")
	if failed.Status != 4 || failed.Err != "" || failed.TimedOut || failed.File != "systemd-dependencies-pre-nixos.txt" {
		t.Fatalf("failed entry %+v", failed)
	}
	ok := entry(t, idx, "systemd-status-pre-nixos")
	if ok.Status != 0 || ok.Err != "" || ok.Size != len("ran: systemctl status --no-pager -l 'pre-nixos.service'\n") {
		t.Fatalf("ok entry %+v", ok)
	}
	index := readFile(t, filepath.Join(dir, "index.md"))
	for _, want := range []string{
		"# Captures",
		"| systemd | systemctl list-jobs | `systemctl list-jobs --no-pager -l` | 0 |",
		"[systemd-list-jobs.txt](systemd-list-jobs.txt) (54 B)",
		"| systemd | systemctl list-dependencies pre-nixos.service | `systemctl list-dependencies --no-pager -l 'pre-nixos.service'` | 4 |",
		"| journalctl -u pre-nixos.service -b | `journalctl -u 'pre-nixos.service' -b --no-pager -o short-monotonic -n 400` | - |",
		"timed out after 100ms",
	} {
		if !strings.Contains(index, want) {
			t.Fatalf("index.md lacks %q:\n%s", want, index)
		}
	}
	if strings.Contains(index, "Stopped early") {
		t.Fatalf("index says stopped early:\n%s", index)
	}
}

// The wrapper must be valid shell that turns pagers and colours off, merges stderr and
// keeps the exit status.
func TestWrapIsValidShell(t *testing.T) {
	cmd := exec.Command("sh", "-c", Wrap(`echo "$SYSTEMD_PAGER $SYSTEMD_COLORS $PAGER $TERM"; echo to-stderr >&2; cat; exit 3`))
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit: %v", err)
	}
	if string(out) != "cat 0 cat dumb\nto-stderr\n" {
		t.Fatalf("output %q", out)
	}
	// The interactive shell's environment is untouched: the exports stay in the subshell.
	out, err = exec.Command("sh", "-c", Wrap("true")+`; echo "[$SYSTEMD_PAGER]"`).Output()
	if err != nil || string(out) != "[]\n" {
		t.Fatalf("exports leaked: %q %v", out, err)
	}
	if strings.Contains(Wrap("x"), "\n") {
		t.Fatal("wrapped command has a newline: the shell would show a PS2 prompt")
	}
}

// Every systemd, journal and networkd command must turn its pager off itself too, in
// case the environment does not reach it (sudo, a login shell).
func TestCommandsDisablePagers(t *testing.T) {
	for _, set := range []Set{Systemd("pre-nixos", "sshd", "systemd-networkd"), Network("lan"), Storage(), Kernel()} {
		for _, it := range set.Items {
			for _, tool := range []string{"systemctl", "journalctl", "networkctl"} {
				if strings.HasPrefix(it.Cmd, tool+" ") && !strings.Contains(it.Cmd, "--no-pager") {
					t.Errorf("%s: %q has no --no-pager", it.Name, it.Cmd)
				}
			}
			if strings.HasPrefix(it.Cmd, "systemctl ") && !strings.Contains(it.Cmd, " -l") {
				t.Errorf("%s: %q may ellipsize lines (no -l)", it.Name, it.Cmd)
			}
			if it.Name == "" || it.Label == "" || (it.Cmd == "") == (it.Glob == "") {
				t.Errorf("malformed item %+v", it)
			}
		}
	}
}

func TestGuestGoneStopsTheRun(t *testing.T) {
	f := &fakeRunner{rules: []behaviour{
		{match: "ip addr", err: fmt.Errorf("%w: reading the console: console closed", ErrGone)},
	}}
	dir := t.TempDir()
	idx, err := Capture(context.Background(), f.exec(t), dir, Network("lan"), Kernel())
	if !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), "network-ip-addr") {
		t.Fatalf("error %v", err)
	}
	if last := f.calls[len(f.calls)-1]; last != "ip addr" {
		t.Fatalf("ran %q after the guest was gone", last)
	}
	if idx.Stopped == "" {
		t.Fatal("index does not say it stopped")
	}
	var skipped []string
	for _, e := range idx.Entries {
		if e.Skipped {
			skipped = append(skipped, e.Name)
			if e.Status != -1 || !strings.Contains(e.Err, "the guest is gone") {
				t.Errorf("skipped entry %+v", e)
			}
		}
	}
	want := []string{"network-ip-route", "network-networkctl-status-lan", "network-ip-link-stats-lan", "kernel-dmesg"}
	if fmt.Sprint(skipped) != fmt.Sprint(want) {
		t.Fatalf("skipped %v, want %v", skipped, want)
	}
	index := readFile(t, filepath.Join(dir, "index.md"))
	if !strings.Contains(index, "Stopped early: capturing network-ip-addr: the guest is gone") || !strings.Contains(index, "| kernel | dmesg | `dmesg \\| tail -n 1000` | - | - | - | not run:") {
		t.Fatalf("index.md:\n%s", index)
	}
}

type goneErr struct{}

func (goneErr) Error() string { return "qemu exited with status 1" }
func (goneErr) Gone() bool    { return true }

func TestGoneByMethod(t *testing.T) {
	f := &fakeRunner{rules: []behaviour{{match: "list-jobs", err: fmt.Errorf("running: %w", goneErr{})}}}
	_, err := Capture(context.Background(), f.exec(t), t.TempDir(), Systemd("x"))
	if err == nil || len(f.calls) != 1 {
		t.Fatalf("err %v after %d calls", err, len(f.calls))
	}
	if !Gone(err) || Gone(errors.New("other")) || Gone(nil) {
		t.Fatal("Gone misclassifies")
	}
}

// A transport error that is not fatal (one garbled frame) is recorded and the run goes on.
func TestTransportErrorNotGoneContinues(t *testing.T) {
	f := &fakeRunner{rules: []behaviour{{match: "ip -o link", err: errors.New("frame checksum mismatch")}}}
	idx, err := Capture(context.Background(), f.exec(t), t.TempDir(), Network())
	if err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 4 {
		t.Fatalf("%d calls", len(f.calls))
	}
	if e := entry(t, idx, "network-ip-link"); e.Err != "frame checksum mismatch" || e.TimedOut || e.Status != -1 {
		t.Fatalf("entry %+v", e)
	}
}

func TestCallerContextEndsTheRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeRunner{}
	r := runnerFunc(func(c context.Context, cmd string) ([]byte, int, error) {
		out, st, err := f.exec(t).Exec(c, cmd)
		if len(f.calls) == 2 {
			cancel()
		}
		return out, st, err
	})
	idx, err := Capture(ctx, r, t.TempDir(), Systemd("a"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if len(f.calls) != 2 {
		t.Fatalf("%d calls after cancel", len(f.calls))
	}
	if n := len(idx.Entries); n != 5 || !idx.Entries[4].Skipped || !idx.Entries[2].Skipped {
		t.Fatalf("entries %+v", idx.Entries)
	}
}

func TestGlobCapturesEachFile(t *testing.T) {
	f := &fakeRunner{rules: []behaviour{
		{match: "[ $k = 1 ]", out: "STATE=applied\n"},
		{match: "[ $k = 2 ]", out: "{}\n"},
		{match: "for f in /run/pre-nixos/*", out: "/run/pre-nixos/storage-status\n/run/pre-nixos/plan 1.json\n"},
		{match: "for f in", out: ""}, // no files elsewhere
	}}
	dir := t.TempDir()
	sets := []Set{{Name: "storage", Items: Storage().Items[3:6]}}
	idx, err := Capture(context.Background(), f.exec(t), dir, sets...)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "storage-run-pre-nixos-storage-status.txt")); got != "STATE=applied\n" {
		t.Fatalf("storage-status copy %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "storage-run-pre-nixos-plan-1.json.txt")); got != "{}\n" {
		t.Fatalf("plan copy %q", got)
	}
	want := []string{
		`for f in /run/pre-nixos/*; do [ -f "$f" ] && printf '%s\n' "$f"; done; true`,
		globFile("/run/pre-nixos/*", 1),
		globFile("/run/pre-nixos/*", 2),
		`for f in /var/log/pre-nixos/*; do [ -f "$f" ] && printf '%s\n' "$f"; done; true`,
		`for f in /tmp/pre-nixos*.log; do [ -f "$f" ] && printf '%s\n' "$f"; done; true`,
	}
	if fmt.Sprint(f.calls) != fmt.Sprint(want) {
		t.Fatalf("calls\n%q\nwant\n%q", f.calls, want)
	}
	if e := entry(t, idx, "storage-run-pre-nixos-plan-1.json"); e.Label != "/run/pre-nixos/plan 1.json" {
		t.Fatalf("entry %+v", e)
	}
	// The listing command must be real shell that lists only regular files.
	tmp := t.TempDir()
	os.WriteFile(filepath.Join(tmp, "a b"), nil, 0o644)
	os.Mkdir(filepath.Join(tmp, "sub"), 0o755)
	out, err := exec.Command("sh", "-c", Wrap(globList(tmp+"/*"))).Output()
	if err != nil || string(out) != tmp+"/a b\n" {
		t.Fatalf("listing %q %v", out, err)
	}
	out, err = exec.Command("sh", "-c", Wrap(globList(tmp+"/nothing*"))).Output()
	if err != nil || string(out) != "" {
		t.Fatalf("empty listing %q %v", out, err)
	}
}

func TestSharedCapturesRunOnce(t *testing.T) {
	f := &fakeRunner{}
	_, err := Capture(context.Background(), f.exec(t), t.TempDir(), Systemd("a"), Systemd("b"), Kernel(), Kernel())
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, c := range f.calls {
		count[c]++
	}
	for c, n := range count {
		if n != 1 {
			t.Errorf("%q ran %d times", c, n)
		}
	}
	if len(f.calls) != 2+3+3+1 {
		t.Fatalf("%d calls: %q", len(f.calls), f.calls)
	}
}

func TestSecondCaptureNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	f := &fakeRunner{rules: []behaviour{{match: "dmesg", out: "first\n"}}}
	if _, err := Capture(context.Background(), f.exec(t), dir, Kernel()); err != nil {
		t.Fatal(err)
	}
	f.rules[0].out = "second\n"
	idx, err := Capture(context.Background(), f.exec(t), dir, Kernel())
	if err != nil {
		t.Fatal(err)
	}
	if idx.Entries[0].File != "kernel-dmesg-2.txt" {
		t.Fatalf("second file %q", idx.Entries[0].File)
	}
	if readFile(t, filepath.Join(dir, "kernel-dmesg.txt")) != "first\n" || readFile(t, filepath.Join(dir, "kernel-dmesg-2.txt")) != "second\n" {
		t.Fatal("contents mixed up")
	}
	index := readFile(t, filepath.Join(dir, "index.md"))
	if strings.Count(index, "# Captures") != 1 || strings.Count(index, "\n## ") != 2 {
		t.Fatalf("index.md:\n%s", index)
	}
}

func TestUnwritableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	f := &fakeRunner{}
	_, err := Capture(context.Background(), f.exec(t), file, Kernel())
	if err == nil || !strings.Contains(err.Error(), "creating capture directory") {
		t.Fatalf("error %v", err)
	}
}

func TestWaitDiagnostics(t *testing.T) {
	cmds := func(sets []Set) string {
		var b strings.Builder
		for _, s := range sets {
			b.WriteString("[" + s.Name + "]")
			for _, it := range s.Items {
				b.WriteString(it.Cmd + it.Glob + "\n")
			}
		}
		return b.String()
	}
	for _, c := range []struct {
		name    string
		w       Wait
		sets    string
		want    []string
		notWant []string
	}{
		{"unit", Wait{Kind: WaitUnit, Unit: "pre-nixos"}, "systemd kernel",
			[]string{"systemctl status --no-pager -l 'pre-nixos.service'", "journalctl -u 'pre-nixos.service' -b", "systemctl list-jobs", "list-units --failed", "dmesg"},
			[]string{"networkctl"}},
		{"ipv4", Wait{Kind: WaitIPv4, Iface: "lan"}, "network systemd kernel",
			[]string{"ip -s link show dev 'lan'", "networkctl status --no-pager 'lan'", "ip addr", "ip route", "journalctl -u 'pre-nixos.service' -b", "journalctl -u 'systemd-networkd.service' -b", "systemctl list-jobs", "dmesg"},
			[]string{"lsblk"}},
		{"storage file", Wait{Kind: WaitFile, Path: "/run/pre-nixos/storage-status"}, "storage systemd kernel",
			[]string{"lsblk -f", "cat /run/pre-nixos/storage-status", "/run/pre-nixos/*", "/var/log/pre-nixos/*", "pre-nixos --plan-only", "pre-nixos-detect-storage; echo exit=$?", "journalctl -u 'pre-nixos.service' -b", "dmesg"},
			nil},
		{"other file", Wait{Kind: WaitFile, Path: "/etc/ssh/ssh_host_ed25519_key.pub"}, "file systemd kernel",
			[]string{"ls -la -- '/etc/ssh'", "stat -- '/etc/ssh/ssh_host_ed25519_key.pub'", "systemctl list-jobs"},
			[]string{"lsblk", "systemctl status"}},
		{"ssh on debian", Wait{Kind: WaitSSH, Unit: "ssh"}, "systemd network kernel",
			[]string{"systemctl status --no-pager -l 'ssh.service'", "journalctl -u 'ssh.service' -b", "ip addr"},
			[]string{"sshd"}},
		{"ssh default", Wait{Kind: WaitSSH}, "systemd network kernel",
			[]string{"systemctl status --no-pager -l 'sshd.service'"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			sets := WaitDiagnostics(c.w)
			var names []string
			for _, s := range sets {
				names = append(names, s.Name)
			}
			if strings.Join(names, " ") != c.sets {
				t.Fatalf("sets %v, want %s", names, c.sets)
			}
			all := cmds(sets)
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("no %q in\n%s", w, all)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(all, w) {
					t.Errorf("unexpected %q in\n%s", w, all)
				}
			}
		})
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{"sshd": "sshd.service", "ssh.socket": "ssh.socket", "multi-user.target": "multi-user.target", "pre-nixos.service": "pre-nixos.service"} {
		if got := Unit(in); got != want {
			t.Errorf("Unit(%q) = %q", in, got)
		}
	}
	for in, want := range map[string]string{"../etc/passwd": "etc-passwd", ".hidden": "hidden", "plan 1.json": "plan-1.json", "": "capture", "a/b|c": "a-b-c"} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
	if got := shellQuote("it's"); got != `'it'\''s'` {
		t.Errorf("quote %s", got)
	}
}

// TestGlobNeverTypesGuestFileNames: files matching a glob are named by whoever can write
// to the directory (/tmp for every guest user), and the names used to be typed back into
// the root shell. A name made to run a command ('$(touch …)', ^U that erases the line
// before it on a terminal) must never appear in a command, and the files are still
// captured, here by a runner that is a real shell.
func TestGlobNeverTypesGuestFileNames(t *testing.T) {
	tmp := t.TempDir()
	pwned := filepath.Join(tmp, "pwned")
	hostile := "pre-nixos\x15touch pwned #'$(touch pwned)'.log"
	if err := os.WriteFile(filepath.Join(tmp, hostile), []byte("hostile content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "pre-nixos-b.log"), []byte("plain\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var cmds []string
	r := runnerFunc(func(ctx context.Context, cmd string) ([]byte, int, error) {
		cmds = append(cmds, cmd)
		sh := exec.CommandContext(ctx, "sh", "-c", cmd)
		sh.Dir = tmp
		out, err := sh.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, ee.ExitCode(), nil
		}
		return out, 0, err
	})
	dir := t.TempDir()
	idx, err := Capture(context.Background(), r, dir, Set{Name: "s", Items: []Item{{Name: "logs", Label: "logs", Glob: tmp + "/pre-nixos*.log"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		if strings.Contains(c, "touch") || strings.Contains(c, "\x15") {
			t.Fatalf("a guest-chosen file name was typed: %q", c)
		}
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("the file name ran a command")
	}
	var got []string
	for _, e := range idx.Entries[1:] {
		if e.Status != 0 {
			t.Fatalf("capture %+v failed", e)
		}
		got = append(got, readFile(t, filepath.Join(dir, e.File)))
		if strings.ContainsAny(e.Label, "\x15\n") {
			t.Fatalf("label %q carries control characters into the index", e.Label)
		}
	}
	if len(got) != 2 || !(got[0] == "hostile content\n" && got[1] == "plain\n" || got[1] == "hostile content\n" && got[0] == "plain\n") {
		t.Fatalf("captured %q", got)
	}
}
