package bootmenu

import (
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func findMenus(t *testing.T, dir string) []*Menu {
	t.Helper()
	menus, err := Find(os.DirFS("testdata/" + dir))
	require.NoError(t, err)
	require.NotEmpty(t, menus, "no boot menu found in testdata/%s", dir)
	return menus
}

func menuOf(t *testing.T, menus []*Menu, loader string) *Menu {
	t.Helper()
	for _, m := range menus {
		if m.Loader == loader {
			return m
		}
	}
	t.Fatalf("no %s menu among %d", loader, len(menus))
	return nil
}

func entry(t *testing.T, m *Menu, label string) Entry {
	t.Helper()
	for _, e := range m.Entries {
		if e.Label == label {
			return e
		}
	}
	t.Fatalf("%s has no entry %q; entries: %s", m.Config, label, names(m.Entries))
	return Entry{}
}

// Debian's netboot menu, as on its mini.iso: the default entry is reached through a
// chain of INCLUDEs with missing files in between, DEFAULT names the menu module rather
// than a label, and nothing in it has a serial console.
func TestDebianNetbootISOLINUX(t *testing.T) {
	menus := findMenus(t, "debian-netboot")
	m := menuOf(t, menus, ISOLINUX)
	require.Equal(t, "isolinux.cfg", m.Config)
	def, ok := m.Default()
	require.True(t, ok, "a default entry")
	assert.Equal(t, "install", def.Label)
	assert.Equal(t, "Install", def.Title, "the ^ hotkey mark is dropped")
	assert.Equal(t, "/debian-installer/amd64/linux", def.Kernel)
	assert.Equal(t, []string{"/debian-installer/amd64/initrd.gz"}, def.Initrds, "initrd= from APPEND, relative to the working directory")
	assert.Equal(t, "vga=788 --- quiet", def.Cmdline, "initrd= is taken out of the command line")
	assert.False(t, def.SerialConsole())
	assert.True(t, def.Bootable())
	assert.Equal(t, "vga=788 --- quiet console=ttyS0,115200n8", def.DirectCmdline())
	assert.Equal(t, "debian-installer/amd64/boot-screens/txt.cfg", def.Config)

	rescue := entry(t, m, "rescue")
	assert.Equal(t, "advanced", rescue.Menu, "included inside MENU BEGIN advanced")
	assert.Contains(t, rescue.Cmdline, "rescue/enable=true")
	dark := entry(t, m, "installdark")
	assert.Equal(t, "dark", dark.Menu)
	assert.False(t, dark.Default, "a submenu's MENU DEFAULT is not the boot default")
	help := entry(t, m, "help")
	assert.False(t, help.Bootable())
	assert.Contains(t, strings.Join(help.Unresolved, " "), "CONFIG")
	for _, e := range m.Entries {
		assert.NotEqual(t, "mainmenu", e.Label, "MENU EXIT labels are navigation, not entries")
	}
	assert.Contains(t, strings.Join(m.Notes, "\n"), "gtk.cfg: no such file", "a missing INCLUDE is noted")

	g := menuOf(t, menus, GRUB)
	gdef, ok := g.Default()
	require.True(t, ok)
	assert.Equal(t, "Install", gdef.Label)
	assert.Equal(t, "/debian-installer/amd64/linux", gdef.Kernel)
	assert.Equal(t, "vga=788 --- quiet", gdef.Cmdline)
	assert.Equal(t, "Advanced options ...", entry(t, g, "... Expert install").Menu)

	sel, err := Select(menus, "^expert$")
	require.NoError(t, err)
	assert.Equal(t, "expert", sel.Label)
	sel, err = Select(menus, "")
	require.NoError(t, err)
	assert.Equal(t, "install", sel.Label, "ISOLINUX first: it is what a BIOS boots")
	_, err = Select(menus, "Rescue")
	require.ErrorContains(t, err, "matches", "several different entries match")
	_, err = Select(menus, "nothing-like-this")
	require.ErrorContains(t, err, "no entry matches")
}

func TestDebianNetinst(t *testing.T) {
	menus := findMenus(t, "debian-netinst")
	m := menuOf(t, menus, ISOLINUX)
	require.Equal(t, "isolinux/isolinux.cfg", m.Config)
	def, ok := m.Default()
	require.True(t, ok)
	assert.Equal(t, "installgui", def.Label, "the top-level MENU DEFAULT (gtk.cfg)")
	assert.Equal(t, "/install.amd/vmlinuz", def.Kernel)
	assert.Equal(t, []string{"/install.amd/gtk/initrd.gz"}, def.Initrds)
	assert.Equal(t, "vga=788 --- quiet", def.Cmdline)
	txt := entry(t, m, "install")
	assert.Equal(t, []string{"/install.amd/initrd.gz"}, txt.Initrds)
	assert.True(t, txt.Bootable())
	assert.Equal(t, "advanced", entry(t, m, "rescuegui").Menu, "INCLUDE inside an INCLUDE inside a submenu")

	g := menuOf(t, menus, GRUB)
	gdef, ok := g.Default()
	require.True(t, ok)
	assert.Equal(t, "Graphical install", gdef.Label, "--hotkey=g before the title is an option")
	assert.Equal(t, []string{"/install.amd/gtk/initrd.gz"}, gdef.Initrds)
	assert.Equal(t, "Advanced options ...", entry(t, g, "... Expert install").Menu)
}

func TestDebianLive(t *testing.T) {
	menus := findMenus(t, "debian-live")
	m := menuOf(t, menus, ISOLINUX)
	def, ok := m.Default()
	require.True(t, ok)
	assert.Equal(t, "live-amd64", def.Label)
	assert.Equal(t, "/live/vmlinuz-6.1.0-18-amd64", def.Kernel)
	assert.Equal(t, []string{"/live/initrd.img-6.1.0-18-amd64"}, def.Initrds, "INITRD as its own line")
	assert.Equal(t, "boot=live components quiet splash", def.Cmdline)
	hdt := entry(t, m, "hdt")
	assert.Contains(t, strings.Join(hdt.Unresolved, " "), "not a Linux kernel")
	memtest := entry(t, m, "memtest")
	assert.Contains(t, strings.Join(memtest.Unresolved, " "), "/live/memtest is not on the ISO", "a missing kernel is reported")

	g := menuOf(t, menus, GRUB)
	gdef, ok := g.Default()
	require.True(t, ok)
	assert.Equal(t, "Live system (amd64)", gdef.Label)
	assert.Equal(t, "boot=live components quiet splash findiso=", gdef.Cmdline, "an unset variable expands to nothing, as in GRUB")
	assert.True(t, gdef.Bootable())
	assert.Contains(t, strings.Join(gdef.Assumed, " "), "$iso_path", "and is reported")
	assert.Equal(t, "", entry(t, g, "Start installer").Menu, "entries from a sourced file")
	assert.Equal(t, "Advanced install options ...", entry(t, g, "Start text installer").Menu, "source inside a submenu")
	mt := entry(t, g, "Memory Diagnostic Tool (memtest86+)")
	assert.False(t, mt.Bootable())
	assert.False(t, entry(t, g, "UEFI Firmware Settings").Bootable())
}

func TestUbuntuLiveServer(t *testing.T) {
	menus := findMenus(t, "ubuntu-live-server")
	require.Len(t, menus, 2, "grub.cfg and loopback.cfg")
	g := menus[0]
	require.Equal(t, "boot/grub/grub.cfg", g.Config)
	def, ok := g.Default()
	require.True(t, ok)
	assert.Equal(t, "Try or Install Ubuntu Server", def.Label)
	assert.Equal(t, "/casper/vmlinuz", def.Kernel)
	assert.Equal(t, []string{"/casper/initrd"}, def.Initrds)
	assert.Equal(t, "---", def.Cmdline)
	assert.Equal(t, "--- console=ttyS0,115200n8", def.DirectCmdline())
	assert.Contains(t, strings.Join(entry(t, g, "Test memory").Unresolved, " "), "linux16")
	assert.Contains(t, strings.Join(entry(t, g, "Boot from next volume").Unresolved, " "), "no linux command")

	lb := menus[1]
	require.Equal(t, "boot/grub/loopback.cfg", lb.Config)
	le := entry(t, lb, "Ubuntu Server with the HWE kernel")
	assert.Equal(t, "/casper/hwe-vmlinuz", le.Kernel)
	assert.Equal(t, "iso-scan/filename= ---", le.Cmdline)
	assert.Contains(t, strings.Join(le.Assumed, " "), "$iso_path")
}

// The NixOS installer: the default entry has no serial console, the fifth one does (as
// in the menu drawn in nixos-24.05-isolinux-autologin.serial.log).
func TestNixOSInstaller(t *testing.T) {
	menus := findMenus(t, "nixos-minimal")
	m := menuOf(t, menus, ISOLINUX)
	require.Len(t, m.Entries, 6)
	def, ok := m.Default()
	require.True(t, ok)
	assert.Equal(t, "boot", def.Label)
	assert.Equal(t, "NixOS 24.05.20241230.b134951 Installer", def.Title)
	assert.Equal(t, "/boot/bzImage", def.Kernel)
	assert.Equal(t, []string{"/boot/initrd"}, def.Initrds)
	assert.True(t, strings.HasPrefix(def.Cmdline, "init=/nix/store/"))
	assert.Contains(t, def.Cmdline, "root=LABEL=nixos-minimal-24.05-x86_64")
	assert.False(t, def.SerialConsole())
	serial := m.Entries[4]
	assert.Equal(t, "boot-serial", serial.Label)
	assert.True(t, serial.SerialConsole())
	sel, err := Select(menus, "serial")
	require.NoError(t, err)
	assert.Equal(t, "boot-serial", sel.Label, "a regexp on label or title")
	sel, err = Select(menus, "NixOS 24.05.20241230.b134951 Installer (copytoram)")
	require.NoError(t, err)
	assert.Equal(t, "boot-copytoram", sel.Label, "an exact title, parentheses and all")

	g := menuOf(t, menus, GRUB)
	require.Equal(t, "EFI/boot/grub.cfg", g.Config, "found case-insensitively")
	gdef, ok := g.Default()
	require.True(t, ok)
	assert.Equal(t, "/boot/bzImage", gdef.Kernel)
	assert.True(t, strings.HasPrefix(gdef.Cmdline, "init=/nix/store/"), "${isoboot} expands to nothing: %q", gdef.Cmdline)
	assert.Contains(t, strings.Join(gdef.Assumed, " "), "$isoboot", "isoboot is set only when $iso_path is")
	var serialG *Entry
	for i, e := range g.Entries {
		if e.SerialConsole() {
			serialG = &g.Entries[i]
		}
	}
	require.NotNil(t, serialG)
	assert.Equal(t, "HiDPI, Quirks and Accessibility>Serial console=ttyS0,115200n8", serialG.Menu)
	assert.False(t, entry(t, g, "rEFInd").Bootable())
}

func TestDirectCmdlineKeepsTty0AndPutsSerialLast(t *testing.T) {
	e := Entry{Cmdline: "quiet console=tty0"}
	assert.Equal(t, "quiet console=tty0 console=ttyS0,115200n8", e.DirectCmdline())
	assert.Equal(t, SerialArg, Entry{}.DirectCmdline())
	assert.Equal(t, "boot=live console=ttyS0,115200n8", Entry{Cmdline: "boot=live console=ttyS0,115200n8"}.DirectCmdline(), "already last: not added twice")
	assert.Equal(t, "console=ttyS0,115200n8 console=tty0 console=ttyS0,115200n8", Entry{Cmdline: "console=ttyS0,115200n8 console=tty0"}.DirectCmdline(), "tty0 last would be primary")
	assert.True(t, Entry{Cmdline: "console=ttyS1,9600"}.SerialConsole())
	assert.False(t, Entry{Cmdline: "xconsole=ttyS0"}.SerialConsole())
}

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for k, v := range files {
		m[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return m
}

func TestISOLINUXDetails(t *testing.T) {
	fsys := mapFS(map[string]string{
		"isolinux/isolinux.bin": "",
		"isolinux/isolinux.cfg": "APPEND quiet\nDEFAULT two\nLABEL one\n KERNEL vmlinuz\nLABEL two\n kernel /boot/vmlinuz extra=1\n append initrd=a.img,/b.img root=x\nLABEL three\n LINUX vmlinuz\n APPEND -\n INITRD c.img\nLABEL four\n KERNEL menu.c32\n",
		"isolinux/vmlinuz":      "k",
		"boot/vmlinuz":          "k",
		"isolinux/a.img":        "",
		"b.img":                 "",
		"isolinux/c.img":        "",
	})
	m, err := ParseISOLINUX(fsys, "isolinux/isolinux.cfg")
	require.NoError(t, err)
	require.Len(t, m.Entries, 4)
	one, two, three, four := m.Entries[0], m.Entries[1], m.Entries[2], m.Entries[3]
	assert.Equal(t, "quiet", one.Cmdline, "a global APPEND is the default for labels without one")
	assert.Equal(t, "/isolinux/vmlinuz", one.Kernel)
	assert.True(t, two.Default, "DEFAULT naming a label")
	assert.Equal(t, "/boot/vmlinuz", two.Kernel)
	assert.Equal(t, "extra=1 root=x", two.Cmdline, "KERNEL's own arguments come first")
	assert.Equal(t, []string{"/isolinux/a.img", "/b.img"}, two.Initrds)
	assert.Equal(t, "", three.Cmdline, "APPEND - means none")
	assert.Equal(t, []string{"/isolinux/c.img"}, three.Initrds)
	assert.False(t, four.Bootable())
}

func TestISOLINUXConfigChangesDirectory(t *testing.T) {
	fsys := mapFS(map[string]string{
		"isolinux.cfg":     "CONFIG /sub/real.cfg\nLABEL never\n KERNEL nope\n",
		"sub/real.cfg":     "LABEL here\n KERNEL vmlinuz\n APPEND initrd=initrd.gz\n",
		"sub/vmlinuz":      "",
		"sub/initrd.gz":    "",
		"other/x.cfg":      "LABEL x\n KERNEL k\n",
		"boot/isolinux.cf": "",
	})
	m, err := ParseISOLINUX(fsys, "isolinux.cfg")
	require.NoError(t, err)
	require.Len(t, m.Entries, 1, "nothing after CONFIG is read")
	assert.Equal(t, "/sub/vmlinuz", m.Entries[0].Kernel, "the new config's directory is the working directory")
	assert.Equal(t, []string{"/sub/initrd.gz"}, m.Entries[0].Initrds)
	assert.True(t, m.Entries[0].Default)
}

func TestISOLINUXCaseInsensitiveNames(t *testing.T) {
	fsys := mapFS(map[string]string{
		"ISOLINUX/ISOLINUX.CFG": "INCLUDE MENU.CFG\n",
		"ISOLINUX/MENU.CFG;1":   "LABEL a\n KERNEL /BOOT/VMLINUZ\n",
		"BOOT/VMLINUZ":          "",
	})
	menus, err := Find(fsys)
	require.NoError(t, err)
	require.Len(t, menus, 1)
	require.Len(t, menus[0].Entries, 1)
	assert.True(t, menus[0].Entries[0].Bootable(), "%v", menus[0].Entries[0].Unresolved)
}

func TestGRUBDetails(t *testing.T) {
	fsys := mapFS(map[string]string{
		"boot/grub/grub.cfg": `set root=cd0
set kdir="/boot"
default=second  # a title
menuentry "first" { linux $kdir/vmlinuz a=1; initrd $kdir/i1 $kdir/i2 ; }
menuentry 'second' --id sec $menuentry_id_option 'x' {
	set arg=b
	linuxefi ($root)${kdir}/vmlinuz "q=one two" \
	  $arg console=tty0
	initrdefi /boot/i1
}
function f {
	menuentry "in a function" { linux /boot/vmlinuz }
}
menuentry "relative" { linux vmlinuz }
menuentry "var in path" { linux $nowhere/vmlinuz }
`,
		"boot/vmlinuz": "", "boot/i1": "", "boot/i2": "",
	})
	m, err := ParseGRUB(fsys, "boot/grub/grub.cfg")
	require.NoError(t, err)
	require.Len(t, m.Entries, 4, "a function body is not a menu")
	first, second := m.Entries[0], m.Entries[1]
	assert.Equal(t, "a=1", first.Cmdline)
	assert.Equal(t, []string{"/boot/i1", "/boot/i2"}, first.Initrds)
	assert.True(t, second.Default, "default by title")
	assert.Equal(t, "/boot/vmlinuz", second.Kernel, "($root) names the ISO")
	assert.Equal(t, "q=one two b console=tty0", second.Cmdline)
	assert.Equal(t, "q=one two b console=tty0 console=ttyS0,115200n8", second.DirectCmdline())
	assert.Contains(t, strings.Join(m.Entries[2].Unresolved, " "), "not an absolute path")
	assert.Contains(t, strings.Join(m.Entries[3].Unresolved, " "), "$nowhere")

	for d, want := range map[string]string{"1": "second", "sec": "second", "0": "first", "saved": "first"} {
		fsys["boot/grub/grub.cfg"] = &fstest.MapFile{Data: []byte("set default=" + d + "\nmenuentry first { linux /boot/vmlinuz }\nmenuentry second --id sec { linux /boot/vmlinuz }\n")}
		m, err := ParseGRUB(fsys, "boot/grub/grub.cfg")
		require.NoError(t, err)
		e, ok := m.Default()
		require.True(t, ok, d)
		assert.Equal(t, want, e.Label, "default=%s", d)
	}
}

// Hostile configs: every one gives an error or a menu, quickly, never a hang or panic.
func TestHostileConfigs(t *testing.T) {
	big := strings.Repeat("# padding\n", MaxFileSize/10+1)
	many := strings.Repeat("LABEL x\n KERNEL k\n", MaxEntries+1)
	cases := []struct {
		name, loader string
		files        map[string]string
		wantErr      string
	}{
		{"isolinux self include", ISOLINUX, map[string]string{"isolinux.cfg": "INCLUDE isolinux.cfg\n"}, "include loop"},
		{"isolinux include loop", ISOLINUX, map[string]string{"isolinux.cfg": "INCLUDE a.cfg\n", "a.cfg": "MENU INCLUDE b.cfg\n", "b.cfg": "include a.cfg\n"}, "include loop: isolinux.cfg -> a.cfg -> b.cfg -> a.cfg"},
		{"isolinux config loop", ISOLINUX, map[string]string{"isolinux.cfg": "CONFIG a.cfg\n", "a.cfg": "CONFIG isolinux.cfg\n"}, "include loop"},
		{"isolinux huge file", ISOLINUX, map[string]string{"isolinux.cfg": big}, "more than"},
		{"isolinux too many labels", ISOLINUX, map[string]string{"isolinux.cfg": many}, "more than 4096 labels"},
		{"grub source loop", GRUB, map[string]string{"grub.cfg": "source /grub.cfg\n"}, "source loop"},
		{"grub unterminated quote", GRUB, map[string]string{"grub.cfg": "menuentry 'x {\n"}, "unterminated single quote"},
		{"grub stray brace", GRUB, map[string]string{"grub.cfg": "}\n"}, "without a block"},
		{"grub huge file", GRUB, map[string]string{"grub.cfg": big}, "more than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fsys := mapFS(c.files)
			var err error
			if c.loader == ISOLINUX {
				_, err = ParseISOLINUX(fsys, "isolinux.cfg")
			} else {
				_, err = ParseGRUB(fsys, "grub.cfg")
			}
			require.ErrorContains(t, err, c.wantErr)
		})
	}
	// A wide fan-out of includes, each file included by all before it, stays bounded.
	files := map[string]string{}
	for i := 0; i < 12; i++ {
		var sb strings.Builder
		for j := i + 1; j < 12; j++ {
			sb.WriteString("INCLUDE f" + strings.Repeat("x", j) + ".cfg\n")
		}
		files["f"+strings.Repeat("x", i)+".cfg"] = sb.String()
	}
	_, err := ParseISOLINUX(mapFS(files), "f.cfg")
	require.ErrorIs(t, err, ErrLimit)
	// A missing kernel is reported on the entry, and selecting it says why it won't boot.
	m, err := ParseISOLINUX(mapFS(map[string]string{"isolinux.cfg": "LABEL a\n KERNEL /gone\n"}), "isolinux.cfg")
	require.NoError(t, err)
	require.False(t, m.Entries[0].Bootable())
	_, err = Extract(t.Context(), "/nonexistent.iso", m.Entries[0], t.TempDir())
	require.ErrorContains(t, err, "/gone is not on the ISO")
}

func TestNoMenu(t *testing.T) {
	menus, err := Find(mapFS(map[string]string{"README": "x"}))
	require.NoError(t, err)
	require.Empty(t, menus)
	_, err = Select(menus, "")
	require.ErrorContains(t, err, "no boot menu entries")
}

func fuzzFS(cfg, inc []byte) fs.FS {
	return fstest.MapFS{
		"isolinux/isolinux.cfg": &fstest.MapFile{Data: cfg},
		"isolinux/inc.cfg":      &fstest.MapFile{Data: inc},
		"boot/grub/grub.cfg":    &fstest.MapFile{Data: cfg},
		"boot/grub/inc.cfg":     &fstest.MapFile{Data: inc},
		"boot/vmlinuz":          &fstest.MapFile{Data: []byte("k")},
	}
}

func FuzzISOLINUX(f *testing.F) {
	for _, dir := range []string{"debian-netinst/isolinux/menu.cfg", "nixos-minimal/isolinux/isolinux.cfg", "debian-live/isolinux/live.cfg"} {
		b, err := os.ReadFile("testdata/" + dir)
		require.NoError(f, err)
		f.Add(b, []byte("LABEL x\nKERNEL /boot/vmlinuz\n"))
	}
	f.Add([]byte("INCLUDE inc.cfg\nDEFAULT a\n"), []byte("include isolinux.cfg\n"))
	f.Add([]byte("CONFIG inc.cfg /\n"), []byte("LABEL a\n LINUX boot/vmlinuz\n APPEND initrd=,,x\n"))
	f.Fuzz(func(t *testing.T, cfg, inc []byte) {
		m, err := ParseISOLINUX(fuzzFS(cfg, inc), "isolinux/isolinux.cfg")
		if err != nil {
			return
		}
		defaults := 0
		for _, e := range m.Entries {
			if e.Default {
				defaults++
			}
			if e.Kernel != "" && !strings.HasPrefix(e.Kernel, "/") {
				t.Fatalf("kernel path %q is not absolute", e.Kernel)
			}
			if strings.Contains(" "+e.Cmdline, " initrd=") {
				t.Fatalf("initrd= left in the command line %q", e.Cmdline)
			}
		}
		if defaults > 1 {
			t.Fatalf("%d default entries", defaults)
		}
	})
}

func FuzzGRUB(f *testing.F) {
	for _, p := range []string{"debian-live/boot/grub/grub.cfg", "nixos-minimal/EFI/boot/grub.cfg", "ubuntu-live-server/boot/grub/grub.cfg", "debian-netboot/boot/grub/grub.cfg"} {
		b, err := os.ReadFile("testdata/" + p)
		require.NoError(f, err)
		f.Add(b, []byte("menuentry x { linux /boot/vmlinuz }\n"))
	}
	f.Add([]byte("source /boot/grub/inc.cfg\nset default=${x}\n"), []byte("source /boot/grub/grub.cfg\n"))
	f.Add([]byte("submenu a { submenu b { menuentry \"c\" { linux \"$v\"/x } } }"), []byte("{{{"))
	f.Fuzz(func(t *testing.T, cfg, inc []byte) {
		m, err := ParseGRUB(fuzzFS(cfg, inc), "boot/grub/grub.cfg")
		if err != nil {
			return
		}
		defaults := 0
		for _, e := range m.Entries {
			if e.Default {
				defaults++
			}
			if e.Bootable() && !strings.HasPrefix(e.Kernel, "/") {
				t.Fatalf("bootable entry with kernel path %q", e.Kernel)
			}
		}
		if defaults > 1 {
			t.Fatalf("%d default entries", defaults)
		}
	})
}

// One file named in two cases is one file: the loop is still found.
func TestIncludeLoopThroughCaseVariants(t *testing.T) {
	fsys := mapFS(map[string]string{"isolinux.cfg": "INCLUDE A.CFG\n", "a.cfg": "include Isolinux.CFG\n"})
	_, err := ParseISOLINUX(fsys, "isolinux.cfg")
	require.ErrorContains(t, err, "include loop")
	gfs := mapFS(map[string]string{"boot/grub/grub.cfg": "source /BOOT/grub/GRUB.cfg\n"})
	_, err = ParseGRUB(gfs, "boot/grub/grub.cfg")
	require.ErrorContains(t, err, "source loop")
}
