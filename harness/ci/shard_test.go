package ci

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestShardDealsEveryNameToExactlyOneShard(t *testing.T) {
	names := []string{"TestE", "TestA", "TestD", "TestC", "TestB", "TestF", "TestG"}
	for n := 1; n <= 9; n++ {
		count := map[string]int{}
		sizes := []int{}
		for i := 1; i <= n; i++ {
			got := Shard(names, i, n)
			sizes = append(sizes, len(got))
			for _, name := range got {
				count[name]++
			}
		}
		for _, name := range names {
			if count[name] != 1 {
				t.Errorf("n=%d: %s is in %d shards, want 1", n, name, count[name])
			}
		}
		// Round-robin keeps shards within one test of each other.
		if slices.Max(sizes)-slices.Min(sizes) > 1 {
			t.Errorf("n=%d: shard sizes %v differ by more than one", n, sizes)
		}
	}
	if got := Shard(names, 2, 3); !slices.Equal(got, []string{"TestB", "TestE"}) {
		t.Errorf("Shard(2/3) = %v, want [TestB TestE] (sorted, then every third from the second)", got)
	}
}

func TestParseShard(t *testing.T) {
	for _, ok := range []struct {
		in   string
		i, n int
	}{{"1/1", 1, 1}, {"2/4", 2, 4}, {" 4 / 4 ", 4, 4}} {
		i, n, err := ParseShard(ok.in)
		if err != nil || i != ok.i || n != ok.n {
			t.Errorf("ParseShard(%q) = %d, %d, %v; want %d, %d", ok.in, i, n, err, ok.i, ok.n)
		}
	}
	for _, bad := range []string{"", "1", "0/4", "5/4", "1/0", "a/b", "-1/2", "1/2/3"} {
		if _, _, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) succeeded; want an error", bad)
		}
	}
}

func TestRunPatternSelectsExactlyTheShard(t *testing.T) {
	if got := RunPattern(nil); got != "^$" {
		t.Errorf("RunPattern(nil) = %q; an empty shard must match nothing, not everything", got)
	}
	if got := RunPattern([]string{"TestA", "TestB"}); got != "^(TestA|TestB)$" {
		t.Errorf("RunPattern = %q", got)
	}
}

func TestScenarioTestsFindsTopLevelTestsOnly(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("boot_test.go", `package scenarios

import "testing"

func TestMain(m *testing.M) {}
func TestBoot(t *testing.T) { t.Run("sub", func(t *testing.T) {}) }
func Testing(t *testing.T) {}
func TestHelper(t *testing.T, extra int) {}
func BenchmarkBoot(b *testing.B) {}
func (s suite) TestMethod(t *testing.T) {}
type suite struct{}
`)
	write("storage_test.go", `package scenarios

import "testing"

func TestStorage_Force(t *testing.T) {}
func Test(t *testing.T) {}
`)
	write("helpers.go", `package scenarios

import "testing"

func TestNotInATestFile(t *testing.T) {}
`)
	got, err := ScenarioTests(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Test", "TestBoot", "TestStorage_Force"}
	if !slices.Equal(got, want) {
		t.Errorf("ScenarioTests = %v, want %v", got, want)
	}

	missing, err := ScenarioTests(filepath.Join(dir, "absent"))
	if err != nil || len(missing) != 0 {
		t.Errorf("ScenarioTests(missing dir) = %v, %v; want nothing and no error", missing, err)
	}

	write("dup_test.go", "package scenarios\n\nimport \"testing\"\n\nfunc TestBoot(t *testing.T) {}\n")
	if _, err := ScenarioTests(dir); err == nil {
		t.Error("a test declared twice was accepted; go vet would reject the package")
	}
}
