package bisect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseCandidates(t *testing.T) {
	in := `# Debian kernels, oldest first
good-6.1   kernel=k/vmlinuz-6.1 initrd=k/initrd-6.1 append="console=ttyS0,115200n8 quiet"
  nixos-24.05 iso=/images/nixos-24.05.iso   # trailing text is not a comment
`
	_, err := ParseCandidates(strings.NewReader(in), "/base")
	require.ErrorContains(t, err, `line 3: candidate "nixos-24.05": field "#" is not key=value`)

	in = `# Debian kernels, oldest first

good-6.1   kernel=k/vmlinuz-6.1 initrd=k/initrd-6.1 append="console=ttyS0,115200n8 quiet \"x\""
nixos-24.05 iso=/images/nixos-24.05.iso
nixos-serial iso=/images/nixos-24.05.iso entry="boot-serial" boot=firmware
mini iso=mini.iso entry=^install$
nixos-25.11 url=https://example.org/nixos-25.11.iso sha256=0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF profile=nixos entry=boot-serial
k2 kernel=k/vmlinuz-2 profile=mini
`
	cs, err := ParseCandidates(strings.NewReader(in), "/base")
	require.NoError(t, err)
	require.Equal(t, []Candidate{
		{Name: "good-6.1", Kernel: "/base/k/vmlinuz-6.1", Initrd: "/base/k/initrd-6.1", Append: `console=ttyS0,115200n8 quiet "x"`},
		{Name: "nixos-24.05", ISO: "/images/nixos-24.05.iso"},
		{Name: "nixos-serial", ISO: "/images/nixos-24.05.iso", Entry: "boot-serial", Boot: "firmware"},
		{Name: "mini", ISO: "/base/mini.iso", Entry: "^install$"},
		{Name: "nixos-25.11", URL: "https://example.org/nixos-25.11.iso", SHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Profile: "nixos", Entry: "boot-serial"},
		{Name: "k2", Kernel: "/base/k/vmlinuz-2", Profile: "mini"},
	}, cs)

	bad := map[string]string{
		"a iso=x\na iso=y":                `candidate "a" already defined on line 1`,
		"a":                               "want `name iso=PATH [entry=LABEL]",
		"a iso=x kernel=y":                "exclusive",
		"a initrd=x":                      "needs iso=, url= or kernel=",
		"a url=https://x/a.iso":           "url= needs sha256=<64 hex digits>",
		"a url=https://x/a.iso sha256=12": "url= needs sha256=<64 hex digits>",
		"a url=https://x/a.iso sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef iso=y": "excludes iso=",
		"a url=ftp://x/a.iso sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef":         "want an http(s) URL",
		"a iso=x sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef":                     "sha256= only applies to url=",
		"a iso=x profile=Nix\\OS":     "is not a profile name",
		"a iso=x append=quiet":        "append= only applies to kernel=",
		"a kernel=x colour=red":       `unknown key "colour"`,
		`a kernel=x append="unclosed`: "unterminated quote",
		"iso=x kernel=y":              "must not contain '='",
		"a kernel=x entry=install":    "entry= and boot= only apply to iso=",
		"a iso=x boot=sideways":       "want direct, firmware or auto",
	}
	for text, want := range bad {
		_, err := ParseCandidates(strings.NewReader(text), "")
		require.ErrorContains(t, err, want, text)
	}
}

func TestCandidatesFromArgs(t *testing.T) {
	cs, err := CandidatesFromArgs([]string{"/i/a-1.iso", "b kernel=/k/b initrd=/k/ib", "/i/c.img"})
	require.NoError(t, err)
	require.Equal(t, []Candidate{
		{Name: "a-1", ISO: "/i/a-1.iso"},
		{Name: "b", Kernel: "/k/b", Initrd: "/k/ib"},
		{Name: "c.img", ISO: "/i/c.img"},
	}, cs)
	_, err = CandidatesFromArgs([]string{"/x/a.iso", "/y/a.iso"})
	require.ErrorContains(t, err, `candidate "a" given twice`)
}

func touch(t *testing.T, p, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

func TestLoadCandidatesDirSortsByDebianVersion(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"6.12.111+deb12-amd64", "6.1.0-50-amd64", "6.12.100+deb12-amd64", "6.1.0-47-amd64", "6.1.0-9-amd64"} {
		touch(t, filepath.Join(dir, "vmlinuz-"+v), "k")
		if v != "6.1.0-9-amd64" {
			touch(t, filepath.Join(dir, "initrd.img-"+v), "i")
		}
	}
	touch(t, filepath.Join(dir, "config-6.1.0-47-amd64"), "ignored")
	cs, err := LoadCandidatesDir(dir, "console=ttyS0")
	require.NoError(t, err)
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
		require.Equal(t, "console=ttyS0", c.Append)
	}
	require.Equal(t, []string{"6.1.0-9-amd64", "6.1.0-47-amd64", "6.1.0-50-amd64", "6.12.100+deb12-amd64", "6.12.111+deb12-amd64"}, names)
	require.Empty(t, cs[0].Initrd)
	require.Equal(t, filepath.Join(dir, "initrd.img-6.1.0-47-amd64"), cs[1].Initrd)
}

func TestLoadCandidatesDirSubdirsAndISOs(t *testing.T) {
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "1.10", "bzImage"), "k")
	touch(t, filepath.Join(dir, "1.10", "initrd.gz"), "i")
	touch(t, filepath.Join(dir, "1.10", "append"), "console=ttyS0 bootlab.version=1.10\n")
	touch(t, filepath.Join(dir, "1.9", "vmlinuz"), "k")
	touch(t, filepath.Join(dir, "1.2~rc1", "live.iso"), "iso")
	touch(t, filepath.Join(dir, "notes", "README"), "not a candidate")
	touch(t, filepath.Join(dir, "debian-live-1.5.0-amd64.iso"), "iso")
	cs, err := LoadCandidatesDir(dir, "quiet")
	require.NoError(t, err)
	require.Equal(t, []Candidate{
		{Name: "1.2~rc1", ISO: filepath.Join(dir, "1.2~rc1", "live.iso")},
		{Name: "debian-live-1.5.0-amd64", ISO: filepath.Join(dir, "debian-live-1.5.0-amd64.iso")},
		{Name: "1.9", Kernel: filepath.Join(dir, "1.9", "vmlinuz"), Append: "quiet"},
		{Name: "1.10", Kernel: filepath.Join(dir, "1.10", "bzImage"), Initrd: filepath.Join(dir, "1.10", "initrd.gz"), Append: "console=ttyS0 bootlab.version=1.10"},
	}, cs)

	_, err = LoadCandidatesDir(filepath.Join(dir, "notes"), "")
	require.ErrorContains(t, err, "no *.iso, vmlinuz-VERSION or VERSION/ entries")
	_, err = LoadCandidatesDir(filepath.Join(dir, "missing"), "")
	require.ErrorContains(t, err, "reading candidate directory")
}

func TestLoadCandidatesResolvesRelativeToListFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "list.txt")
	touch(t, p, "old iso=old.iso\nnew iso=sub/new.iso\n")
	cs, err := LoadCandidates(p)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "old.iso"), cs[0].ISO)
	require.Equal(t, filepath.Join(dir, "sub/new.iso"), cs[1].ISO)
	_, err = LoadCandidates(filepath.Join(dir, "nope.txt"))
	require.ErrorContains(t, err, "opening candidate list")
}
