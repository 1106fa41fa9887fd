package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Login facts of the mini image, for harness image profiles (see docs/images.md).
const (
	MiniHostname     = "mini"
	MiniUser         = "user"
	MiniUserPassword = "user"
	MiniRootPassword = "root"
	// MiniLoginPrompt is what getty prints (after /etc/issue) when it wants a user name.
	MiniLoginPrompt = "mini login: "
	// MiniPasswordPrompt is what both login and su print before reading a password.
	MiniPasswordPrompt = "Password: "
	MiniUserPrompt     = "user@mini:~$ "
	MiniRootPrompt     = "root@mini:~# "
)

// File is an extra file for the mini image. Mode 0 means 0644; include os.ModeSetuid etc.
// as needed. Files are owned by root.
type File struct {
	Content string      `json:"content"`
	Mode    os.FileMode `json:"mode"`
}

// MiniSpec describes a mini image. The zero value is the standard image.
type MiniSpec struct {
	// KernelPackage is a linux-image-<release> package; empty means the one the
	// linux-image-amd64 metapackage depends on.
	KernelPackage string `json:"kernel_package"`
	// Init replaces /init entirely (a #!/bin/sh script). `. /etc/rc.mini` inside it does
	// the standard mounts, hostname and module loading; `exec /sbin/init` then gives the
	// normal getty. Without busybox init as PID 1, only `poweroff -f` powers off.
	Init string `json:"init,omitempty"`
	// Files are added to (or replace) the image's files, keyed by absolute path.
	Files map[string]File `json:"files,omitempty"`
	// Version is written to /etc/mini-version and /etc/issue, to make synthetic series.
	Version string `json:"version,omitempty"`
	// AutoLogin logs `user` in on ttyS0 without a login prompt.
	AutoLogin bool `json:"auto_login,omitempty"`
	// Append is added to Mini.Append.
	Append string `json:"append,omitempty"`
}

// Mini is a built mini image.
type Mini struct {
	Kernel        string `json:"kernel"`
	Initrd        string `json:"initrd"`
	Append        string `json:"append"`
	KernelVersion string `json:"kernel_version"` // what uname -r prints
	KernelPackage string `json:"kernel_package"`
	Version       string `json:"version"`
	Hash          string `json:"hash"`
	Dir           string `json:"dir"`
}

// MiniAppend is the kernel command line the image needs besides console= and panic=,
// which the harness sets itself.
const MiniAppend = "rdinit=/init"

// BuildMini returns the image for spec, building it on a cache miss (~3 s plus the
// kernel download; a warm call only reads two small files and hashes busybox).
func (c Cache) BuildMini(ctx context.Context, spec MiniSpec) (*Mini, error) {
	if err := needTools("busybox"); err != nil {
		return nil, err
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, err
	}
	bbHash, err := fileSHA256(bb)
	if err != nil {
		return nil, err
	}
	pkg := spec.KernelPackage
	if pkg == "" {
		if pkg, err = c.defaultKernelPackage(ctx); err != nil {
			return nil, fmt.Errorf("choosing the default kernel: %w", err)
		}
	}
	deb, err := c.resolveDeb(ctx, pkg)
	if err != nil {
		return nil, err
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encoding mini spec: %w", err)
	}
	h, sum := newHasher("mini")
	h.add("spec", string(specJSON))
	h.add("kernel-package", pkg)
	h.add("kernel-deb-sha256", deb.SHA256)
	h.add("busybox-sha256", bbHash)
	h.add("init", defaultInit)
	h.add("rc", rcMini)
	h.add("profile", profile)
	hash := sum()
	dir := filepath.Join(c.dir(), "mini", shortHash(hash))
	m := &Mini{
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.gz"),
		Append: strings.TrimSpace(MiniAppend + " " + spec.Append), KernelPackage: pkg,
		KernelVersion: strings.TrimPrefix(pkg, "linux-image-"), Version: spec.Version, Hash: hash, Dir: dir,
	}
	err = cached(ctx, dir, func(ctx context.Context, tmp string) error {
		start := time.Now()
		k, err := c.FetchKernel(ctx, pkg)
		if err != nil {
			return err
		}
		m.KernelVersion = k.Release
		if err := buildMiniInto(ctx, tmp, spec, k, bb); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(m, "", "  ")
		if err := os.WriteFile(filepath.Join(tmp, "mini.json"), append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing mini.json: %w", err)
		}
		slog.Info("built mini image", "kernel", k.Release, "version", spec.Version, "dir", dir, "took", time.Since(start).Round(time.Millisecond))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("building mini image: %w", err)
	}
	touchAndPrune(dir, "*", 64)
	// The recorded metadata is authoritative (the release comes from the package).
	if b, err := os.ReadFile(filepath.Join(dir, "mini.json")); err == nil {
		var rec Mini
		if json.Unmarshal(b, &rec) == nil && rec.KernelVersion != "" {
			m.KernelVersion = rec.KernelVersion
		}
	}
	return m, nil
}

func buildMiniInto(ctx context.Context, out string, spec MiniSpec, k *Kernel, busybox string) error {
	// Hard-linked: a bisect series is many images on one kernel, and the kernel files
	// in the cache are never modified in place.
	if err := os.Link(k.Vmlinuz, filepath.Join(out, "vmlinuz")); err != nil {
		kb, err := os.ReadFile(k.Vmlinuz)
		if err != nil {
			return fmt.Errorf("reading kernel: %w", err)
		}
		if err := os.WriteFile(filepath.Join(out, "vmlinuz"), kb, 0o644); err != nil {
			return fmt.Errorf("writing kernel: %w", err)
		}
	}
	t, err := miniTree(ctx, spec, k, busybox)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := writeCpio(zw, t); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compressing initramfs: %w", err)
	}
	return os.WriteFile(filepath.Join(out, "initrd.gz"), buf.Bytes(), 0o644)
}

// miniTree assembles the initramfs contents.
func miniTree(ctx context.Context, spec MiniSpec, k *Kernel, busybox string) (cpioTree, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("reading busybox: %w", err)
	}
	applets, err := run(ctx, "", busybox, "--list-full")
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets: %w", err)
	}
	userHash, err := cryptPassword(ctx, busybox, MiniUserPassword)
	if err != nil {
		return nil, err
	}
	rootHash, err := cryptPassword(ctx, busybox, MiniRootPassword)
	if err != nil {
		return nil, err
	}
	t := cpioTree{}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "root", "home", "etc", "mnt", "var/log", "lib/modules/mini", "usr/bin", "usr/sbin"} {
		t.dir(d)
	}
	t["tmp"].Mode = os.ModeDir | os.ModeSticky | 0o777
	t["root"].Mode = os.ModeDir | 0o700
	t.dir("home/user")
	t["home/user"].UID, t["home/user"].GID = 1000, 1000
	// Setuid root so `su` and `passwd` work from the unprivileged user; busybox drops
	// privileges itself for every applet that does not need them.
	t.file("bin/busybox", os.ModeSetuid|0o755, bb)
	for _, a := range strings.Fields(string(applets)) {
		a = strings.TrimPrefix(a, "/")
		if a == "bin/busybox" {
			continue
		}
		t.symlink(a, "/bin/busybox")
	}
	// Kernel console nodes must exist before devtmpfs is mounted (the kernel opens
	// /dev/console for init's stdio from the initramfs).
	t.chardev("dev/console", 0o600, 5, 1)
	t.chardev("dev/null", 0o666, 1, 3)
	var order []string
	for _, m := range k.Modules {
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, fmt.Errorf("reading module: %w", err)
		}
		t.file("lib/modules/mini/"+filepath.Base(m), 0o644, b)
		order = append(order, filepath.Base(m))
	}
	t.file("lib/modules/mini/order", 0o644, []byte(strings.Join(order, "\n")+"\n"))

	init := defaultInit
	if spec.Init != "" {
		init = spec.Init
	}
	t.file("init", 0o755, []byte(init))
	t.file("etc/rc.mini", 0o755, []byte(rcMini))
	getty := "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n"
	if spec.AutoLogin {
		getty = "ttyS0::respawn:/sbin/getty -n -l /bin/autologin -L 115200 ttyS0 vt100\n"
	}
	t.file("etc/inittab", 0o644, []byte("::sysinit:/bin/true\n"+getty+
		"::ctrlaltdel:/sbin/reboot\n::shutdown:/bin/sync\n"))
	t.file("bin/autologin", 0o755, []byte("#!/bin/sh\n# getty -n runs this instead of login: a login session for user, no password.\nexec /bin/login -f "+MiniUser+"\n"))
	t.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"))
	t.file("etc/group", 0o644, []byte("root:x:0:\ntty:x:5:user\nuser:x:1000:\n"))
	t.file("etc/shadow", 0o600, []byte("root:"+rootHash+":19000:0:99999:7:::\nuser:"+userHash+":19000:0:99999:7:::\n"))
	t.file("etc/shells", 0o644, []byte("/bin/sh\n/bin/ash\n"))
	t.file("etc/hostname", 0o644, []byte(MiniHostname+"\n"))
	t.file("etc/hosts", 0o644, []byte("127.0.0.1 localhost "+MiniHostname+"\n"))
	t.file("etc/profile", 0o644, []byte(profile))
	t.file("etc/mini-version", 0o644, []byte(spec.Version+"\n"))
	issue := "bootlab mini image"
	if spec.Version != "" {
		issue += " version " + spec.Version
	}
	t.file("etc/issue", 0o644, []byte(issue+" (\\l)\n\n"))

	paths := make([]string, 0, len(spec.Files))
	for p := range spec.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		f := spec.Files[p]
		mode := f.Mode
		if mode.Perm() == 0 && mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) == 0 {
			mode |= 0o644
		}
		t.file(p, mode, []byte(f.Content))
	}
	return t, nil
}

// cryptPassword makes a SHA-512 crypt hash with a fixed salt, so equal inputs give a
// byte-identical initramfs (and busybox login verifies it with the same code).
func cryptPassword(ctx context.Context, busybox, pw string) (string, error) {
	out, err := run(ctx, "", busybox, "mkpasswd", "-m", "sha512", "-S", "bootlabmini", pw)
	if err != nil {
		return "", fmt.Errorf("hashing a password with busybox mkpasswd: %w", err)
	}
	h := strings.TrimSpace(string(out))
	if !strings.HasPrefix(h, "$6$") {
		return "", fmt.Errorf("busybox mkpasswd gave %q, not a SHA-512 crypt hash", h)
	}
	return h, nil
}

const defaultInit = `#!/bin/sh
# bootlab mini image: set up the basics, then hand PID 1 to busybox init, which runs
# getty on ttyS0 (respawned) and turns poweroff into a real ACPI power-off.
. /etc/rc.mini
exec /sbin/init
`

// rcMini is sourced by /init (also by custom Init scripts).
const rcMini = `#!/bin/sh
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname mini
while read -r m; do
	[ -n "$m" ] && insmod "/lib/modules/mini/$m"
done < /lib/modules/mini/order
ip link set lo up
[ -x /etc/rc.local ] && /etc/rc.local
`

const profile = `export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export PS1='\u@\h:\w\$ '
export HOME="${HOME:-/}"
cd "$HOME" 2>/dev/null
`
