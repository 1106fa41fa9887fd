package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/fakeguest"
	"github.com/bootlab/bootlab/harness/labtest"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

func needTools(t *testing.T, install string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is needed: apt-get install %s", tool, install)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err, "reading %s", src)
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	require.NoError(t, os.WriteFile(dst, b, 0o644))
}

// buildDebianMiniISO makes, in a temp dir, an ISO laid out like Debian's mini.iso from
// the netboot package the installer scenario uses: the package's text netboot tree at
// the root with its ISOLINUX menu files unchanged (pxelinux.cfg/default, that is
// boot-screens/syslinux.cfg, is the isolinux.cfg: INCLUDEs of menu.cfg, txt.cfg, ...; the default entry "install" has
// vga=788 and no serial console) and its GRUB config at /boot/grub/grub.cfg. Only the
// binaries come from the host: isolinux.bin and the COM32 modules it must match.
func buildDebianMiniISO(t *testing.T, ctx context.Context) string {
	needTools(t, "xorriso isolinux syslinux-common", "xorriso")
	tree, err := labtest.Cache().DebianInstallerNetbootTree(ctx)
	require.NoError(t, err, "fetching the installer netboot package")
	stage := filepath.Join(t.TempDir(), "mini")
	out, err := exec.CommandContext(ctx, "cp", "-a", tree, stage).CombinedOutput()
	require.NoError(t, err, "copying the netboot tree: %s", out)
	// pxelinux.cfg/default is a symlink to boot-screens/syslinux.cfg in the package.
	copyFile(t, filepath.Join(tree, "debian-installer/amd64/boot-screens/syslinux.cfg"), filepath.Join(stage, "isolinux.cfg"))
	copyFile(t, filepath.Join(tree, "debian-installer/amd64/grub/grub.cfg"), filepath.Join(stage, "boot/grub/grub.cfg"))
	copyFile(t, "/usr/lib/ISOLINUX/isolinux.bin", filepath.Join(stage, "isolinux.bin"))
	const mods = "/usr/lib/syslinux/modules/bios/"
	copyFile(t, mods+"ldlinux.c32", filepath.Join(stage, "ldlinux.c32"))
	for _, m := range []string{"ldlinux.c32", "libcom32.c32", "libutil.c32", "vesamenu.c32"} {
		copyFile(t, mods+m, filepath.Join(stage, "debian-installer/amd64/boot-screens", m))
	}
	iso := filepath.Join(t.TempDir(), "mini.iso")
	out, err = exec.CommandContext(ctx, "xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-V", "ISOIMAGE", "-J", "-R",
		"-b", "isolinux.bin", "-c", "boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", stage).CombinedOutput()
	require.NoError(t, err, "xorriso: %s", out)
	return iso
}

// TestRunUpstreamMiniISO is issue 12's end-to-end check: an upstream ISO whose menu and
// default entry talk only to VGA. `bootlab run --iso` with no flag reads the menu,
// boots the default entry directly with a serial console and reaches the installer's
// first dialog over serial; `--boot firmware` on the same ISO fails within a minute,
// saying the console stayed silent and what to try.
func TestRunUpstreamMiniISO(t *testing.T) {
	vmgate.VM(t)
	ctx, cancel := context.WithTimeout(context.Background(), vmScaled(10*time.Minute))
	defer cancel()
	iso := buildDebianMiniISO(t, ctx)

	var out, errb fakeguest.Buffer
	require.Equal(t, exitPass, Main([]string{"inspect", "--menu", iso}, &out, &errb), errb.String())
	require.Contains(t, out.String(), `* "install" ("Install")`, "the default entry is marked")
	require.Contains(t, out.String(), "cmdline: vga=788 --- quiet\n    serial console: no")

	notes := t.TempDir()
	out, errb = fakeguest.Buffer{}, fakeguest.Buffer{}
	code := Main([]string{"run", "--iso", iso, "--notes", notes, "--slug", "mini-direct", "--expect-screen", "Select a language"}, &out, &errb)
	require.Equal(t, exitPass, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Contains(t, errb.String(), `booting entry "install" directly (the entry has no serial console)`)
	require.Contains(t, out.String(), "[!!] Select a language", "the installer's first dialog box, drawn on the serial console")
	m := onlyRunMetadata(t, notes, "mini-direct")
	require.Equal(t, "direct", m.Image.Boot)
	require.Equal(t, "install", m.Image.Entry)
	require.Equal(t, "vga=788 --- quiet console=ttyS0,115200n8", m.Image.Append, "the entry's own command line, serial console last")
	require.Equal(t, "iso", m.Image.Kind)
	require.NotEmpty(t, m.Image.Kernel)
	html, err := os.ReadFile(filepath.Join(runDir(t, notes, "mini-direct"), runrec.ReportFile))
	require.NoError(t, err)
	require.Contains(t, string(html), "vga=788 --- quiet console=ttyS0,115200n8", "the report shows the exact command line")

	out, errb = fakeguest.Buffer{}, fakeguest.Buffer{}
	code = Main([]string{"run", "--iso", iso, "--notes", notes, "--slug", "mini-firmware", "--boot", "firmware", "--expect-screen", "Select a language"}, &out, &errb)
	require.Equal(t, exitFail, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Contains(t, errb.String(), "no output on the serial console")
	require.Contains(t, errb.String(), "--boot direct")
	require.Contains(t, errb.String(), "--entry")
	fm := onlyRunMetadata(t, notes, "mini-firmware")
	require.Equal(t, "firmware", fm.Image.Boot)
	require.Contains(t, fm.Error, "no output on the serial console")
}

func runDir(t *testing.T, notes, slug string) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(notes, "*"+slug+"*"))
	require.NoError(t, err)
	var dirs []string
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.IsDir() {
			dirs = append(dirs, m)
		}
	}
	require.Len(t, dirs, 1, "one run directory for %s in %s", slug, notes)
	return dirs[0]
}

func onlyRunMetadata(t *testing.T, notes, slug string) runrec.Metadata {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runDir(t, notes, slug), runrec.MetadataFile))
	require.NoError(t, err)
	var m runrec.Metadata
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// TestInspectGRUBISO: the entries of an ISO made by grub-mkrescue from a hand-written
// grub.cfg are listed, with the default, the initrds and which has a serial console.
func TestInspectGRUBISO(t *testing.T) {
	vmgate.VM(t)
	needTools(t, "grub-common grub-pc-bin xorriso mtools", "grub-mkrescue", "xorriso")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tree := t.TempDir()
	files := map[string]string{
		"boot/grub/grub.cfg": `set timeout=5
set default=1
menuentry "Live" --class live {
	linux /live/vmlinuz boot=live quiet
	initrd /live/initrd.img
}
menuentry "Live (serial console)" --id serial {
	linux /live/vmlinuz boot=live console=tty0 console=ttyS0,115200n8
	initrd /live/initrd.img
}
submenu "Advanced" {
	menuentry "Live (debug)" { linux /live/vmlinuz boot=live debug; initrd /live/initrd.img }
}
`,
		"live/vmlinuz":    "kernel",
		"live/initrd.img": "initrd",
	}
	for p, c := range files {
		require.NoError(t, os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(tree, p), []byte(c), 0o644))
	}
	iso := filepath.Join(t.TempDir(), "grub.iso")
	out, err := exec.CommandContext(ctx, "grub-mkrescue", "-o", iso, tree).CombinedOutput()
	require.NoError(t, err, "grub-mkrescue: %s", out)

	var stdout, stderr fakeguest.Buffer
	require.Equal(t, exitPass, Main([]string{"inspect", "--menu", iso}, &stdout, &stderr), stderr.String())
	text := stdout.String()
	require.Contains(t, text, "boot menu (grub, /boot/grub/grub.cfg): 3 entries")
	require.Contains(t, text, "  \"Live\"\n    kernel:  /live/vmlinuz\n    initrd:  /live/initrd.img\n    cmdline: boot=live quiet\n    serial console: no")
	require.Contains(t, text, "* \"Live (serial console)\"", "set default=1 is the second entry")
	require.Contains(t, text, "cmdline: boot=live console=tty0 console=ttyS0,115200n8\n    serial console: yes")
	require.Contains(t, text, `"Live (debug)" in submenu "Advanced"`)

	stdout = fakeguest.Buffer{}
	require.Equal(t, exitPass, Main([]string{"inspect", "--menu", "--json", iso}, &stdout, &stderr), stderr.String())
	var js struct {
		Menus []struct {
			Loader  string
			Entries []struct {
				Label   string
				Default bool
			}
		} `json:"boot_menus"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &js))
	require.Len(t, js.Menus, 1)
	require.Equal(t, "grub", js.Menus[0].Loader)
	require.True(t, js.Menus[0].Entries[1].Default)
	require.True(t, strings.HasPrefix(js.Menus[0].Entries[0].Label, "Live"))

	// The whole image through the bounded reader: grub-mkrescue's El Torito catalog
	// and Rock Ridge names are read, and nothing is a problem (an EFI entry is there
	// only where grub-efi is installed).
	stdout, stderr = fakeguest.Buffer{}, fakeguest.Buffer{}
	require.Equal(t, exitPass, Main([]string{"inspect", iso}, &stdout, &stderr), stderr.String())
	text = stdout.String()
	require.Contains(t, text, "names: rock ridge")
	require.Regexp(t, `boot image: bios, no emulation, bootable, sector \d+ \(4 x 512 bytes\) /boot/grub/i386-pc/eltorito.img`, text)
	require.NotContains(t, text, "problem:")
}
