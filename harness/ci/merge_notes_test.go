package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The nightly report job merges per-shard artifacts with this script; a
// mistake there loses run directories or ledger lines only in CI.
func TestCIMergeNotes(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, body string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("shards/work-notes-shard-1/2026-11-23T02-00-00Z-boot/metadata.json", `{"shard":1}`)
	write("shards/work-notes-shard-1/ledger.jsonl", "{\"run\":\"boot\"}\n")
	write("shards/work-notes-shard-2/2026-11-23T02-00-01Z-storage/metadata.json", `{"shard":2}`)
	// Same run-directory name in two shards must not overwrite.
	write("shards/work-notes-shard-2/2026-11-23T02-00-00Z-boot/metadata.json", `{"shard":2}`)
	write("shards/work-notes-shard-2/ledger.jsonl", "{\"run\":\"storage\"}\n\n{\"run\":\"old\"}\n")
	write("history/ledger.jsonl", "{\"run\":\"old\"}\n")

	cmd := exec.Command("bash", filepath.Join(repoRoot(t), ".ci", "merge-notes.sh"),
		filepath.Join(dir, "shards"), filepath.Join(dir, "notes"), filepath.Join(dir, "history", "ledger.jsonl"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ci-merge-notes: %v\n%s", err, out)
	}

	for _, rel := range []string{
		"notes/2026-11-23T02-00-00Z-boot/metadata.json",
		"notes/2026-11-23T02-00-00Z-boot-work-notes-shard-2/metadata.json",
		"notes/2026-11-23T02-00-01Z-storage/metadata.json",
	} {
		if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
			t.Errorf("%s missing after merge: %v", rel, err)
		}
	}
	want := "{\"run\":\"old\"}\n{\"run\":\"boot\"}\n{\"run\":\"storage\"}\n"
	for _, rel := range []string{"notes/ledger.jsonl", "history/ledger.jsonl"} {
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s =\n%s\nwant history first, then each shard's new lines once:\n%s", rel, got, want)
		}
	}

	// No shards at all (every shard failed before uploading) is an error the
	// report job shows, not an empty summary that looks like success.
	cmd = exec.Command("bash", filepath.Join(repoRoot(t), ".ci", "merge-notes.sh"),
		filepath.Join(dir, "absent"), filepath.Join(dir, "notes2"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not exist") {
		t.Errorf("merging a missing shards directory: err=%v out=%s; want a clear failure", err, out)
	}
}
