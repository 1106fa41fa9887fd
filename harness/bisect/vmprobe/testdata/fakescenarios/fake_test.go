// Package fakescenarios stands in for ./scenarios in vmprobe's tests: it takes the same
// flags and leaves run directories the way scenarios do, without booting anything.
package fakescenarios

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var (
	notes   = flag.String("notes", "", "")
	kernel  = flag.String("kernel", "", "")
	initrd  = flag.String("initrd", "", "")
	appendL = flag.String("append", "", "")
	iso     = flag.String("iso", "", "")
	profile = flag.String("profile", "", "")
	entry   = flag.String("entry", "", "")
	boot    = flag.String("boot", "", "")
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(m.Run())
}

// run leaves a run directory whose VM did or did not reach a root shell.
func run(t *testing.T, rootShell bool) {
	t.Helper()
	if *notes == "" {
		t.Fatal("no -notes: the probe must keep run directories in its own directory")
	}
	dir := filepath.Join(*notes, "run-"+t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	md := `{"slug":"fake","milestones":[{"name":"spawn"}]}`
	if rootShell {
		md = `{"slug":"fake","milestones":[{"name":"spawn"},{"name":"login_prompt"},{"name":"root_shell"}]}`
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata.json"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGood(t *testing.T) {
	if *kernel != "/k/vmlinuz" || *initrd != "/k/initrd" || *appendL != "console=ttyS0 x=1" || *iso != "" {
		t.Fatalf("wrong candidate flags: kernel=%q initrd=%q append=%q iso=%q", *kernel, *initrd, *appendL, *iso)
	}
	run(t, true)
}

func TestGoodISO(t *testing.T) {
	if *iso != "/i/a.iso" || *kernel != "" {
		t.Fatalf("wrong candidate flags: iso=%q kernel=%q", *iso, *kernel)
	}
	run(t, true)
}

// TestForeignISO: a candidate's profile=, entry= and boot= reach the scenario.
func TestForeignISO(t *testing.T) {
	if *iso != "/i/nixos.iso" || *profile != "nixos" || *entry != "boot-serial" || *boot != "direct" {
		t.Fatalf("wrong candidate flags: iso=%q profile=%q entry=%q boot=%q", *iso, *profile, *entry, *boot)
	}
	run(t, true)
}

func TestBad(t *testing.T) {
	run(t, true)
	t.Fatal("behaviour under test is broken")
}

func TestNoBoot(t *testing.T) {
	run(t, false)
	t.Fatal("timed out waiting for the login prompt")
}
