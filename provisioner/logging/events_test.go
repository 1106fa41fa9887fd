package logging

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every event name used anywhere in the provisioner follows
// pre_nixos.<area>.<event> with lower-case words, so log queries can rely
// on the namespace.
func TestEventNamesFollowNamespace(t *testing.T) {
	literal := regexp.MustCompile(`"pre_nixos\.[^"]*"`)
	valid := regexp.MustCompile(`^"pre_nixos\.[a-z_]+(\.[a-z0-9_]+)+"$`)
	seen := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllString(string(b), -1) {
			seen++
			if !valid.MatchString(m) {
				t.Errorf("%s: event %s does not follow pre_nixos.<area>.<event>", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 40 {
		t.Fatalf("found only %d event names; is the walk looking at provisioner/?", seen)
	}
}
