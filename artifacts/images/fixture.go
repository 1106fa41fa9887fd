package images

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
	"github.com/bootlab/bootlab/artifacts/progress"
)

// Login facts of the fixture ISO, for harness image profiles (see docs/images.md).
const (
	FixtureHostname = "fixture"
	FixtureUser     = "bootlab"
	// FixturePromptPlain is the user's prompt with escape sequences removed; the raw
	// prompt also sets the terminal title and colours user@host and the directory.
	FixturePromptPlain = "bootlab@fixture:~$ "
	// FixtureAppend is the kernel command line isolinux boots with.
	FixtureAppend = "boot=live console=ttyS0,115200n8"
)

// fixturePackages are installed on top of mmdebstrap's minbase. Part of the base key.
var fixturePackages = []string{
	"systemd", "systemd-sysv", "udev", "openssh-server", "sudo", "iproute2", "lvm2", "mdadm",
	"gdisk", "parted", "dosfstools", "e2fsprogs", "util-linux", "live-boot", "linux-image-amd64",
	"kmod", "bash", "ethtool",
	// Not in minbase but expected on any real system: dbus lets unprivileged systemctl,
	// networkctl and logind work; procps gives ps/pkill to debugging sessions.
	"dbus", "procps",
}

// fixtureTools are the host tools the fixture build runs, with their Debian packages.
var fixtureTools = map[string]string{
	"mmdebstrap": "mmdebstrap",
	"mksquashfs": "squashfs-tools",
	"xorriso":    "xorriso",
}

var fixtureFiles = []string{"/usr/lib/ISOLINUX/isolinux.bin", "/usr/lib/syslinux/modules/bios/ldlinux.c32"}

// FixtureSpec describes a fixture ISO.
type FixtureSpec struct {
	// RootKeyFile holds root's authorized public key (one line), embedded at
	// /etc/pre-nixos/root_key.pub in a small layer of its own.
	RootKeyFile string
	// RootKey is the key text itself, used when RootKeyFile is empty.
	RootKey string
	// BinDir holds prebuilt static pre-nixos binaries; empty means build
	// ./provisioner/cmd/... from SourceDir with CGO_ENABLED=0.
	BinDir string
	// SourceDir is the bootlab checkout (default: found upwards from the working
	// directory). Unit files come from SourceDir/provisioner/systemd.
	SourceDir string
	// BreakUnit, when set, replaces pre-nixos.service's ExecStart with this command
	// (e.g. /bin/false) so negative tests can watch the unit fail. It lives in the
	// small layer, so a broken variant costs seconds, not a new squashfs.
	BreakUnit string
	// Files are extra files for the small layer (absolute path -> content, mode).
	Files map[string]File
	// Base picks how the big base layer is built; nil is DefaultFixtureBase. Only the
	// boot benchmark sets it, to measure a lever side by side before it is adopted.
	Base *FixtureBase
}

// FixtureBase is how the fixture's base layer (root squashfs, kernel, initrd) is built.
// Each field is one lever of the cold boot under TCG; `bootlab bench --boot` boots
// bases that differ in one field side by side (docs/benchmarks.md, "Lean fixture boot").
// Every field is part of the base's cache key.
type FixtureBase struct {
	// Initramfs is "most" (Debian's default: every storage driver, the RAID modules
	// force-loaded by mdadm's hook) or "lean" (InitramfsModules, no RAID module loaded
	// at boot, no network or graphics driver, virtio-rng loaded so the kernel's random
	// pool is ready before systemd asks for it).
	Initramfs string `json:"initramfs"`
	// Units is "all" (as Debian installs them) or "lean" (LeanUnitsRemoved removed:
	// timers and e2scrub, which a guest that lives minutes never needs).
	Units string `json:"units"`
	// Compressor and BlockKB are mksquashfs's -comp and -b for the root squashfs;
	// CompressionLevel is zstd's level (0: mksquashfs's default for the compressor).
	Compressor       string `json:"compressor"`
	CompressionLevel int    `json:"compression_level,omitempty"`
	BlockKB          int    `json:"block_kb"`
}

// DefaultFixtureBase is the base every fixture is built on unless FixtureSpec.Base
// says otherwise: the lean initramfs and the lean units, measured against Debian's base
// and the other levers side by side (docs/benchmarks.md, "Lean fixture boot"); the
// squashfs keeps zstd-3 in 128 KiB blocks (lz4 and 64 KiB blocks did not pay) and the
// CD-ROM stays on IDE (virtio-scsi did not pay).
var DefaultFixtureBase = FixtureBase{Initramfs: "lean", Units: "lean", Compressor: "zstd", CompressionLevel: 3, BlockKB: 128}

// debianBase is the base as Debian makes it (the fixture before these levers): every
// storage module in a gzip initramfs, every unit, zstd level 3 in 128 KiB blocks.
var debianBase = FixtureBase{Initramfs: "most", Units: "all", Compressor: "zstd", CompressionLevel: 3, BlockKB: 128}

// DebianFixtureBase returns the base as Debian makes it, the benchmark's baseline.
func DebianFixtureBase() FixtureBase { return debianBase }

// InitramfsModules are what a lean initramfs loads: the live medium on an IDE or
// virtio-scsi CD-ROM (firmware and direct boots, TestFixtureISO's -cdrom), its
// squashfs through loop and overlay, virtio disks, and virtio-rng.
var InitramfsModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_rng", "ata_piix", "ata_generic", "sr_mod", "cdrom",
	"isofs", "squashfs", "loop", "overlay",
}

// LeanUnitsRemoved are the units a lean base removes (their enablement symlinks, so
// nothing starts them; the files stay for anyone who starts one by hand).
var LeanUnitsRemoved = []string{
	"multi-user.target.wants/e2scrub_reap.service",
	"timers.target.wants/apt-daily-upgrade.timer", "timers.target.wants/apt-daily.timer",
	"timers.target.wants/dpkg-db-backup.timer", "timers.target.wants/e2scrub_all.timer",
	"timers.target.wants/fstrim.timer", "timers.target.wants/systemd-tmpfiles-clean.timer",
}

// Validate reports a base option this builder does not know.
func (b FixtureBase) Validate() error {
	var errs []string
	if b.Initramfs != "most" && b.Initramfs != "lean" {
		errs = append(errs, fmt.Sprintf("initramfs %q is not most or lean", b.Initramfs))
	}
	if b.Units != "all" && b.Units != "lean" {
		errs = append(errs, fmt.Sprintf("units %q is not all or lean", b.Units))
	}
	switch b.Compressor {
	case "zstd", "lz4", "xz", "gzip", "lzo":
	default:
		errs = append(errs, fmt.Sprintf("compressor %q is not zstd, lz4, xz, gzip or lzo", b.Compressor))
	}
	if b.CompressionLevel != 0 && b.Compressor != "zstd" {
		errs = append(errs, "a compression level is only for zstd")
	}
	if b.BlockKB < 4 || b.BlockKB > 1024 || b.BlockKB&(b.BlockKB-1) != 0 {
		errs = append(errs, fmt.Sprintf("block size %d KiB is not a power of two from 4 to 1024", b.BlockKB))
	}
	if len(errs) > 0 {
		return fmt.Errorf("fixture base: %s", strings.Join(errs, "; "))
	}
	return nil
}

// script is the shell the base's customize step runs after customizeScript for these
// options (empty for Debian's defaults).
func (b FixtureBase) script() string {
	var s strings.Builder
	if b.Units == "lean" {
		s.WriteString("# Units a guest that lives minutes never needs (FixtureBase.Units).\n")
		for _, u := range LeanUnitsRemoved {
			fmt.Fprintf(&s, "rm -f /etc/systemd/system/%s /lib/systemd/system/%s\n", u, u)
		}
	}
	if b.Initramfs == "lean" {
		s.WriteString(`# A lean initramfs (FixtureBase.Initramfs): the modules the live medium needs, not
# every storage driver.
mkdir -p /etc/initramfs-tools/conf.d /etc/initramfs-tools/hooks
printf 'MODULES=list\n' > /etc/initramfs-tools/conf.d/bootlab-lean.conf
printf '%s\n' ` + strings.Join(InitramfsModules, " ") + ` >> /etc/initramfs-tools/modules
# This hook runs after the packages' hooks. mdadm's force-loads the RAID personalities
# (raid456 benchmarks raid6 and xor as it loads): the live root is never on RAID, and
# the real root's udev loads them when a disk carries an array. live-boot's and kms's
# add every network and graphics driver (58 of the 101 MiB): the live medium is local,
# and the real root loads the NIC's and the display's drivers itself (depmod runs after
# the hooks).
cat > /etc/initramfs-tools/hooks/zz-bootlab-lean <<'HOOKEOF'
` + leanInitramfsHook + `HOOKEOF
chmod 0755 /etc/initramfs-tools/hooks/zz-bootlab-lean
update-initramfs -u -k all
`)
	}
	return s.String()
}

// leanInitramfsHook is the initramfs-tools hook of a lean base (FixtureBase.script):
// it runs in mkinitramfs after the packages' hooks, with DESTDIR the initramfs tree.
const leanInitramfsHook = `#!/bin/sh
[ "$1" = prereqs ] && exit 0
[ -f "$DESTDIR/conf/modules" ] && sed -i -E '/^(linear|multipath|raid[0-9]+|efivarfs)( |$)/d' "$DESTDIR/conf/modules"
rm -rf "$DESTDIR"/usr/lib/modules/*/kernel/drivers/net "$DESTDIR"/usr/lib/modules/*/kernel/drivers/gpu
exit 0
`

func (b FixtureBase) mksquashfsArgs() []string {
	args := []string{"-comp", b.Compressor, "-b", strconv.Itoa(b.BlockKB * 1024)}
	if b.CompressionLevel != 0 {
		args = append(args, "-Xcompression-level", strconv.Itoa(b.CompressionLevel))
	}
	return args
}

// ISO is a built fixture ISO.
type ISO struct {
	Path     string `json:"path"`
	Hash     string `json:"hash"`
	BaseHash string `json:"base_hash"`
	// Kernel and Initrd are the ISO's own, for direct -kernel boots with Append.
	Kernel    string `json:"kernel"`
	Initrd    string `json:"initrd"`
	Append    string `json:"append"`
	RootKey   string `json:"root_key"`
	User      string `json:"user"`
	Hostname  string `json:"hostname"`
	Dir       string `json:"dir"`
	BinDir    string `json:"bin_dir"`
	BuildTook string `json:"build_took,omitempty"`
}

// BuildFixtureISO returns the fixture ISO for spec. The expensive part (root filesystem
// and its squashfs: mmdebstrap, 2-4 minutes, far more on a loaded machine) is keyed only
// by the package list, the customize script and the mirrors. Everything a provisioner
// change touches (the static pre-nixos binaries and its unit files), the root key and
// BreakUnit go into a small second squashfs, so a provisioner edit re-runs only go build,
// mksquashfs on a few files and xorriso: seconds, not a new Debian root.
func (c Cache) BuildFixtureISO(ctx context.Context, spec FixtureSpec) (*ISO, error) {
	start := time.Now()
	key, err := spec.rootKey()
	if err != nil {
		return nil, err
	}
	if key == "" || strings.Contains(key, "\n") || !strings.HasPrefix(key, "ssh-") && !strings.HasPrefix(key, "ecdsa-") {
		return nil, fmt.Errorf("the root key must be one public key line (ssh-ed25519 AAAA...), got %q", truncate(key, 60))
	}
	baseOpts := DefaultFixtureBase
	if spec.Base != nil {
		baseOpts = *spec.Base
	}
	if err := baseOpts.Validate(); err != nil {
		return nil, err
	}
	if err := ensureFixtureTools(ctx); err != nil {
		return nil, err
	}
	base, err := c.buildFixtureBase(ctx, baseOpts)
	if err != nil {
		return nil, err
	}
	prov, err := c.provisionerPayload(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer prov.cleanup()
	filesJSON, err := json.Marshal(spec.Files)
	if err != nil {
		return nil, fmt.Errorf("encoding fixture files: %w", err)
	}
	h, sum := newHasher("fixture-iso")
	h.add("base", base.Hash)
	for _, n := range prov.names {
		h.add("bin/"+n, prov.sums[n])
	}
	h.add("unit", prov.unit)
	h.add("ssh-drop-in", prov.dropIn)
	h.add("root-key", key)
	h.add("break-unit", spec.BreakUnit)
	h.add("files", string(filesJSON))
	h.add("isolinux-cfg", isolinuxCfg)
	for _, f := range fixtureFiles {
		s, err := fileSHA256(f)
		if err != nil {
			return nil, err
		}
		h.add(f, s)
	}
	hash := sum()
	// ISOs on a base other than the default are the boot benchmark's: they have their
	// own prefix, so building them never prunes the ISOs everyone else boots.
	prefix := "iso-"
	if baseOpts != DefaultFixtureBase {
		prefix = "lever-iso-"
	}
	dir := filepath.Join(c.dir(), "fixture", prefix+shortHash(hash))
	iso := &ISO{
		Path: filepath.Join(dir, "fixture.iso"), Hash: hash, BaseHash: base.Hash,
		Kernel: base.Kernel, Initrd: base.Initrd, Append: FixtureAppend, RootKey: key,
		User: FixtureUser, Hostname: FixtureHostname, Dir: dir, BinDir: filepath.Join(dir, "bin"),
	}
	err = cached(ctx, dir, func(ctx context.Context, tmp string) error {
		t0 := time.Now()
		if err := copyBinaries(prov, filepath.Join(tmp, "bin")); err != nil {
			return err
		}
		if err := buildLayer(ctx, tmp, key, spec, prov); err != nil {
			return err
		}
		if err := buildISO(ctx, tmp, base, filepath.Join(tmp, "config.squashfs"), filepath.Join(tmp, "fixture.iso")); err != nil {
			return err
		}
		slog.Info("built fixture ISO", "dir", dir, "took", time.Since(t0).Round(time.Millisecond))
		return atomicfile.WriteJSON(filepath.Join(tmp, "iso.json"), iso)
	})
	if err != nil {
		return nil, fmt.Errorf("building the fixture ISO: %w", err)
	}
	touchAndPrune(dir, prefix+"*", 10)
	iso.BuildTook = time.Since(start).Round(time.Millisecond).String()
	return iso, nil
}

func ensureFixtureTools(ctx context.Context) error {
	var pkgs []string
	for t, p := range fixtureTools {
		if _, err := exec.LookPath(t); err != nil {
			pkgs = append(pkgs, p)
		}
	}
	for _, f := range fixtureFiles {
		if _, err := os.Stat(f); err != nil {
			if strings.Contains(f, "ISOLINUX") {
				pkgs = append(pkgs, "isolinux")
			} else {
				pkgs = append(pkgs, "syslinux-common")
			}
		}
	}
	if len(pkgs) == 0 {
		return nil
	}
	sort.Strings(pkgs)
	if os.Geteuid() != 0 {
		return fmt.Errorf("the fixture ISO needs Debian packages %s: run `sudo apt-get install -y %s`", strings.Join(pkgs, " "), strings.Join(pkgs, " "))
	}
	slog.Info("installing host packages for the fixture ISO", "packages", pkgs)
	args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(pkgs, " "), err, truncate(string(out), 2000))
	}
	return nil
}

// fixtureBase is the big, rarely changing part: squashfs + kernel + initrd.
type fixtureBase struct {
	Hash     string `json:"hash"`
	Squashfs string `json:"squashfs"`
	Kernel   string `json:"kernel"`
	Initrd   string `json:"initrd"`
}

//go:embed fixture/pre-nixos.service
var fallbackPreNixosUnit string

//go:embed fixture/ssh-pre-nixos.conf
var fallbackSSHDropIn string

// findSourceDir walks up from the working directory to the bootlab module root.
func findSourceDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/bootlab/bootlab\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no bootlab checkout (go.mod of github.com/bootlab/bootlab) above the working directory: set FixtureSpec.SourceDir or BinDir")
		}
		dir = parent
	}
}

// preNixosBinaries returns a directory of static pre-nixos binaries: spec.BinDir, or a
// fresh `go build` of the checkout's provisioner commands. -trimpath and -buildvcs=false
// keep the binaries byte-identical across commits that do not touch them, so unrelated
// commits do not invalidate the (slow) base image.
func (c Cache) preNixosBinaries(ctx context.Context, spec FixtureSpec, src string) (string, error) {
	if spec.BinDir != "" {
		return spec.BinDir, nil
	}
	if err := needTools("go"); err != nil {
		return "", err
	}
	out := filepath.Join(c.dir(), "fixture", "bin-build")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".bin-")
	if err != nil {
		return "", fmt.Errorf("creating binary directory: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", tmp+"/", "./provisioner/cmd/...")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("building the static pre-nixos binaries in %s: %w: %s", src, err, truncate(string(b), 3000))
	}
	return tmp, nil
}

// payload is what the provisioner contributes to the fixture: the static binaries (with
// their sha256) and the unit files. It lives in the small layer, not the base.
type payload struct {
	binDir       string
	names        []string
	sums         map[string]string
	unit, dropIn string
	cleanup      func()
}

func (c Cache) provisionerPayload(ctx context.Context, spec FixtureSpec) (*payload, error) {
	src := spec.SourceDir
	if src == "" {
		var err error
		// Prebuilt binaries need no checkout; the unit files then fall back to the
		// builder's copies when none is found.
		if src, err = findSourceDir(); err != nil && spec.BinDir == "" {
			return nil, err
		}
	}
	binDir, err := c.preNixosBinaries(ctx, spec, src)
	if err != nil {
		return nil, err
	}
	p := &payload{binDir: binDir, sums: map[string]string{}, cleanup: func() {}}
	if spec.BinDir == "" {
		p.cleanup = func() { os.RemoveAll(binDir) }
	}
	bins, err := os.ReadDir(binDir)
	if err != nil {
		p.cleanup()
		return nil, fmt.Errorf("reading pre-nixos binaries: %w", err)
	}
	for _, b := range bins {
		if b.Type().IsRegular() {
			s, err := fileSHA256(filepath.Join(binDir, b.Name()))
			if err != nil {
				p.cleanup()
				return nil, err
			}
			p.sums[b.Name()] = s
			p.names = append(p.names, b.Name())
		}
	}
	if len(p.names) == 0 {
		p.cleanup()
		return nil, fmt.Errorf("no pre-nixos binaries in %s", binDir)
	}
	p.unit, p.dropIn = unitFiles(src)
	return p, nil
}

// copyBinaries keeps a copy of the binaries beside the ISO (ISO.BinDir), for callers
// that carry pre-nixos into another guest.
func copyBinaries(p *payload, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, n := range p.names {
		b, err := os.ReadFile(filepath.Join(p.binDir, n))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, n), b, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// baseLayout names how base and layer split the image. Changing the split changes it,
// so a base built under another split is never reused.
const baseLayout = "v2: pre-nixos binaries and units in the layer"

// fixtureBaseKey is the base's cache key: everything that goes into it.
func fixtureBaseKey(opts FixtureBase) string {
	h, sum := newHasher("fixture-base")
	h.add("layout", baseLayout)
	h.add("packages", strings.Join(fixturePackages, ","))
	h.add("customize", customizeScript)
	// Debian's defaults key the base as before the options existed, so introducing
	// them rebuilt nothing.
	if opts != debianBase {
		h.add("options-script", opts.script())
		h.add("mksquashfs", strings.Join(opts.mksquashfsArgs(), " "))
	}
	h.add("mirrors", strings.Join(hostMirrors(), "\n"))
	return sum()
}

func (c Cache) buildFixtureBase(ctx context.Context, opts FixtureBase) (*fixtureBase, error) {
	hash := fixtureBaseKey(opts)
	// Bases the boot benchmark builds to measure a lever have their own prefix and
	// pruning, so they never push out the base everyone else's fixtures are built on.
	prefix, keep := "base-", 3
	dir := filepath.Join(c.dir(), "fixture", prefix+shortHash(hash))
	if st, err := os.Stat(dir); opts != DefaultFixtureBase && (err != nil || !st.IsDir()) {
		// Not one built as a default (an earlier default is, after a change of it).
		prefix, keep = "lever-base-", 5
		dir = filepath.Join(c.dir(), "fixture", prefix+shortHash(hash))
	}
	base := &fixtureBase{Hash: hash, Squashfs: filepath.Join(dir, "filesystem.squashfs"),
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img")}
	err := cached(ctx, dir, func(ctx context.Context, tmp string) error {
		return buildRootfsSquashfs(ctx, tmp, opts)
	})
	if err != nil {
		return nil, fmt.Errorf("building the fixture base image: %w", err)
	}
	touchAndPrune(dir, prefix+"*", keep)
	return base, nil
}

// unitFiles reads the provisioner's unit files, falling back to built-in equivalents
// while the provisioner does not ship them yet.
func unitFiles(src string) (unit, dropIn string) {
	unit, dropIn = fallbackPreNixosUnit, fallbackSSHDropIn
	if src == "" {
		return unit, dropIn
	}
	if b, err := os.ReadFile(filepath.Join(src, "provisioner/systemd/pre-nixos.service")); err == nil {
		unit = string(b)
	} else {
		slog.Warn("provisioner/systemd/pre-nixos.service not found, using the builder's fallback unit", "src", src)
	}
	if b, err := os.ReadFile(filepath.Join(src, "provisioner/systemd/ssh.service.d/pre-nixos.conf")); err == nil {
		dropIn = string(b)
	} else {
		slog.Warn("provisioner/systemd/ssh.service.d/pre-nixos.conf not found, using the builder's fallback drop-in", "src", src)
	}
	return unit, dropIn
}

// hostMirrors turns the host's apt sources (deb822 and one-line) into mmdebstrap mirror
// lines for bookworm suites, so the image comes from the mirror this machine can reach.
func hostMirrors() []string {
	var lines []string
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, stanza := range strings.Split(string(b), "\n\n") {
			fields := map[string]string{}
			sc := bufio.NewScanner(strings.NewReader(stanza))
			for sc.Scan() {
				l := sc.Text()
				if strings.HasPrefix(l, "#") {
					continue
				}
				if k, v, ok := strings.Cut(l, ":"); ok {
					fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
				}
			}
			if !strings.Contains(" "+fields["Types"]+" ", " deb ") || strings.EqualFold(fields["Enabled"], "no") {
				continue
			}
			for _, uri := range strings.Fields(fields["URIs"]) {
				for _, suite := range strings.Fields(fields["Suites"]) {
					if strings.HasPrefix(suite, "bookworm") {
						lines = append(lines, fmt.Sprintf("deb %s %s %s", uri, suite, fields["Components"]))
					}
				}
			}
		}
	}
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 4 && f[0] == "deb" && strings.HasPrefix(f[2], "bookworm") {
				lines = append(lines, strings.Join(f, " "))
			}
		}
	}
	if len(lines) == 0 {
		lines = []string{"deb http://deb.debian.org/debian bookworm main",
			"deb http://deb.debian.org/debian bookworm-updates main",
			"deb http://deb.debian.org/debian-security bookworm-security main"}
	}
	return lines
}

// customizeScript runs inside the new root (chroot) after packages are installed.
// Everything here is part of the base key.
const customizeScript = `set -eu
echo fixture > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 fixture\n' > /etc/hosts
passwd -d root
useradd -m -s /bin/bash -G sudo bootlab
passwd -d bootlab
printf 'bootlab ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/bootlab
chmod 0440 /etc/sudoers.d/bootlab
cat >> /home/bootlab/.bashrc <<'PS1EOF'
# bootlab fixture: a coloured prompt that also sets the terminal title, so the harness's
# ANSI handling is exercised on every prompt.
PS1='\[\e]0;\u@\h: \w\a\]\[\e[1;32m\]\u@\h\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]\$ '
PS1EOF
mkdir -p /etc/systemd/system/serial-getty@ttyS0.service.d /etc/systemd/system/getty.target.wants
cat > /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf <<'UNITEOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin bootlab --keep-baud 115200,57600,38400,9600 - $TERM
UNITEOF
ln -sf /lib/systemd/system/serial-getty@.service /etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service
mkdir -p /etc/pre-nixos
# pre-nixos.service and its wants symlink come with the layer (buildLayer).
systemctl enable systemd-networkd.service
# sshd is held back: pre-nixos reload-or-restarts it once the key and config are ready.
systemctl disable ssh.service ssh.socket 2>/dev/null || true
rm -f /etc/systemd/system/sshd.service
if find /etc/systemd/system -name 'ssh*.service' -path '*wants*' | grep -q .; then
	echo "ssh.service is still wanted by something" >&2; exit 1
fi
rm -f /etc/machine-id /var/lib/dbus/machine-id
: > /etc/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/*
`

func buildRootfsSquashfs(ctx context.Context, out string, opts FixtureBase) error {
	root := filepath.Join(out, "rootfs")
	defer os.RemoveAll(root)
	t0 := time.Now()
	slog.Info("building the fixture root filesystem with mmdebstrap (~80 s)")
	stage := filepath.Join(out, "stage")
	defer os.RemoveAll(stage)
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "customize.sh"), []byte(customizeScript+opts.script()), 0o644); err != nil {
		return err
	}
	args := []string{"--variant=minbase", "--include=" + strings.Join(fixturePackages, ","),
		"--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
	}
	args = append(args,
		fmt.Sprintf("--customize-hook=chroot \"$1\" /bin/sh < %q", filepath.Join(stage, "customize.sh")),
		fmt.Sprintf("--customize-hook=cp \"$1\"/boot/vmlinuz-* %q", filepath.Join(out, "vmlinuz")),
		fmt.Sprintf("--customize-hook=cp \"$1\"/boot/initrd.img-* %q", filepath.Join(out, "initrd.img")),
		"bookworm", root)
	args = append(args, hostMirrors()...)
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	logf, err := os.Create(filepath.Join(out, "mmdebstrap.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	phases := reporter().Mmdebstrap(t0)
	cmd.Stdout, cmd.Stderr = io.MultiWriter(logf, phases), io.MultiWriter(logf, phases)
	err = cmd.Run()
	_ = phases.Close()
	if err != nil {
		b, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("mmdebstrap: %w: %s", err, truncate(tailStr(string(b), 3000), 3000))
	}
	slog.Info("root filesystem done; compressing squashfs", "took", time.Since(t0).Round(time.Second))
	reporter().Done(fmt.Sprintf("mmdebstrap: root filesystem done (%s)", progress.Elapsed(time.Since(t0))))
	t1 := time.Now()
	// The compressor and block size are FixtureBase's (docs/benchmarks.md has what each
	// costs a boot under TCG).
	// -quiet without -no-progress: only the progress bar, which reporter() turns into a
	// percentage.
	sqArgs := append([]string{root, filepath.Join(out, "filesystem.squashfs"), "-noappend"}, opts.mksquashfsArgs()...)
	if err := runProgress(ctx, reporter().Squashfs("root filesystem", t1), "mksquashfs", append(sqArgs, "-e", "boot", "-quiet")...); err != nil {
		return fmt.Errorf("compressing the root filesystem: %w", err)
	}
	slog.Info("squashfs done", "took", time.Since(t1).Round(time.Second))
	reporter().Done(fmt.Sprintf("root filesystem squashfs done (%s)", progress.Elapsed(time.Since(t1))))
	pk, err := run(ctx, "", "chroot", root, "dpkg-query", "-W")
	if err == nil {
		_ = os.WriteFile(filepath.Join(out, "packages.txt"), pk, 0o644)
	}
	return nil
}

func tailStr(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// buildLayer makes the small squashfs stacked over the base by live-boot: pre-nixos
// (binaries, unit, sshd drop-in, the wants symlink `systemctl enable` would make), the
// root key and per-variant overrides. Only files the base does not have go here, so the
// stacking order live-boot picks cannot matter.
func buildLayer(ctx context.Context, out, key string, spec FixtureSpec, prov *payload) error {
	layer := filepath.Join(out, "layer")
	defer os.RemoveAll(layer)
	files := map[string]File{
		ISORootKeyPath:                                     rootKeyFile(key),
		"/etc/systemd/system/pre-nixos.service":            {Content: prov.unit},
		"/etc/systemd/system/ssh.service.d/pre-nixos.conf": {Content: prov.dropIn},
	}
	for _, n := range prov.names {
		b, err := os.ReadFile(filepath.Join(prov.binDir, n))
		if err != nil {
			return fmt.Errorf("reading %s: %w", n, err)
		}
		files["/usr/local/bin/"+n] = File{Content: string(b), Mode: 0o755}
	}
	for _, target := range wantedBy(prov.unit) {
		link := filepath.Join(layer, "etc/systemd/system", target+".wants", "pre-nixos.service")
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/etc/systemd/system/pre-nixos.service", link); err != nil {
			return fmt.Errorf("enabling pre-nixos.service for %s: %w", target, err)
		}
	}
	for p, f := range spec.variantFiles() {
		files[p] = f
	}
	for p, f := range files {
		dst := filepath.Join(layer, filepath.Clean("/"+p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		mode := f.Mode
		if mode.Perm() == 0 {
			mode |= 0o644
		}
		if err := os.WriteFile(dst, []byte(f.Content), mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(dst, mode.Perm()|mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
			return err
		}
	}
	if _, err := run(ctx, "", "mksquashfs", layer, filepath.Join(out, "config.squashfs"),
		"-noappend", "-all-root", "-comp", "zstd", "-quiet", "-no-progress"); err != nil {
		return fmt.Errorf("building the config layer: %w", err)
	}
	return nil
}

// BreakUnitDropIn is where the small layer puts BreakUnit's drop-in.
const BreakUnitDropIn = "/etc/systemd/system/pre-nixos.service.d/zz-break.conf"

func rootKeyFile(key string) File { return File{Content: key + "\n", Mode: 0o444} }

// VariantFiles are the files by which spec's small layer differs from the standard
// fixture's (FixtureSpec{} with the cache's root key): the root key when spec names
// one, BreakUnit's drop-in, and Files. Everything else (the base, the binaries, the
// units) is the standard's, so a guest of the standard fixture given these files before
// pre-nixos starts is a guest of spec's image: how a warm start serves an image
// variant without a saved state of its own (lab.Variant).
func (spec FixtureSpec) VariantFiles() (map[string]File, error) {
	files := spec.variantFiles()
	key, err := spec.rootKey()
	if err != nil {
		return nil, err
	}
	if key != "" {
		files[ISORootKeyPath] = rootKeyFile(key)
	}
	return files, nil
}

// rootKey is the key spec names (RootKeyFile's content, else RootKey), trimmed; "" when
// it names none.
func (spec FixtureSpec) rootKey() (string, error) {
	if spec.RootKeyFile == "" {
		return strings.TrimSpace(spec.RootKey), nil
	}
	b, err := os.ReadFile(spec.RootKeyFile)
	if err != nil {
		return "", fmt.Errorf("reading the root key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// variantFiles are VariantFiles without the root key, which buildLayer always writes.
func (spec FixtureSpec) variantFiles() map[string]File {
	files := map[string]File{}
	if spec.BreakUnit != "" {
		files[BreakUnitDropIn] = File{Content: "# bootlab negative test: this unit is broken on purpose\n[Service]\nExecStart=\nExecStart=" + spec.BreakUnit + "\n"}
	}
	for p, f := range spec.Files {
		files[p] = f
	}
	return files
}

// wantedBy lists the targets in a unit's [Install] WantedBy= lines: the symlinks
// `systemctl enable` would create, made by hand because the layer is built outside
// any chroot.
func wantedBy(unit string) []string {
	var targets []string
	section := ""
	for _, l := range strings.Split(unit, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			section = l
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok && section == "[Install]" && strings.TrimSpace(k) == "WantedBy" {
			targets = append(targets, strings.Fields(v)...)
		}
	}
	return targets
}

const isolinuxCfg = `SERIAL 0 115200
DEFAULT live
PROMPT 0
TIMEOUT 1
LABEL live
  KERNEL /live/vmlinuz
  APPEND initrd=/live/initrd.img ` + FixtureAppend + `
`

// buildISO writes the ISO with xorriso, grafting the cached base files in place rather
// than copying hundreds of megabytes into a staging tree (that is what keeps a key-only
// rebuild within seconds).
func buildISO(ctx context.Context, out string, base *fixtureBase, layer, iso string) error {
	stage := filepath.Join(out, "isostage")
	defer os.RemoveAll(stage)
	if err := os.MkdirAll(filepath.Join(stage, "isolinux"), 0o755); err != nil {
		return err
	}
	// Copied, not grafted: -boot-info-table patches isolinux.bin.
	for _, f := range fixtureFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("reading %s: %w", f, err)
		}
		if err := os.WriteFile(filepath.Join(stage, "isolinux", filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(stage, "isolinux", "isolinux.cfg"), []byte(isolinuxCfg), 0o644); err != nil {
		return err
	}
	if _, err := run(ctx, "", "xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-V", "BOOTLAB_FIXTURE",
		"-J", "-R", "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
		"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin",
		"-graft-points",
		"/isolinux="+filepath.Join(stage, "isolinux"),
		"/live/vmlinuz="+base.Kernel,
		"/live/initrd.img="+base.Initrd,
		"/live/filesystem.squashfs="+base.Squashfs,
		"/live/zz-config.squashfs="+layer,
	); err != nil {
		return fmt.Errorf("writing the ISO: %w", err)
	}
	return nil
}

// touchAndPrune marks dir as just used and deletes all but the keep most recently used
// siblings matching pattern: every provisioner edit makes a new ~200 MB base, and the
// cache must not grow without bound. Recently returned images are never the victims.
func touchAndPrune(dir, pattern string, keep int) {
	now := time.Now()
	_ = os.Chtimes(dir, now, now)
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), pattern))
	type entry struct {
		path string
		mod  time.Time
	}
	var es []entry
	for _, m := range matches {
		if strings.HasPrefix(filepath.Base(m), ".") {
			continue // temporary build directories of live builders
		}
		if st, err := os.Stat(m); err == nil && st.IsDir() {
			es = append(es, entry{m, st.ModTime()})
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].mod.After(es[j].mod) })
	for i := keep; i < len(es); i++ {
		if es[i].path == dir {
			continue
		}
		slog.Info("pruning an old cached image", "dir", es[i].path)
		_ = os.RemoveAll(es[i].path)
	}
}

// PreNixosBinaries builds the checkout's static provisioner binaries (pre-nixos,
// pre-nixos-detect-storage, ...) into a fresh directory the caller removes: what the
// fixture carries, for carrying into other images (`bootlab run --inject pre-nixos`).
func (c Cache) PreNixosBinaries(ctx context.Context) (string, error) {
	src, err := findSourceDir()
	if err != nil {
		return "", err
	}
	return c.preNixosBinaries(ctx, FixtureSpec{}, src)
}
