package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesWithMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.txt")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "new" {
		t.Fatalf("got %q, %v", b, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", st.Mode().Perm())
	}
}

// A fill that dies halfway leaves the old file and no temporary file behind.
func TestWriteWithFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	if err := os.WriteFile(p, []byte(`{"a":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteWith(p, 0o644, func(f *os.File) error {
		_, _ = f.Write([]byte(`{"a":`))
		return errors.New("injected: device full")
	})
	if err == nil || !strings.Contains(err.Error(), "injected") || !strings.Contains(err.Error(), p) {
		t.Fatalf("want the injected error naming the file, got %v", err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != `{"a":1}` {
		t.Fatalf("old content lost: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary file left: %v", ents)
	}
}

func TestWriteJSONCreatesDirectory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "b", "v.json")
	if err := WriteJSON(p, map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "{\n  \"x\": 1\n}\n" {
		t.Fatalf("got %q, %v", b, err)
	}
	if err := WriteJSON(p, func() {}); err == nil {
		t.Fatal("encoding a func must fail")
	}
}
