package vmprobe

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/isoinspect"
	"github.com/bootlab/bootlab/harness/bisect"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/shell"
)

// InstallerScript is the predicate of the installer ISO series: the installer's shell
// can load one of the installer's own kernel modules. Its initrd carries modules for
// one kernel release only (/lib/modules/RELEASE); an ISO whose kernel is another
// release boots, shows the same dialogs and gives the same shell, but cannot load a
// driver, which is how an installer respun with a newer kernel and an old initrd breaks.
// It is a file of the repository (installer.expect next to this one), so the bisect
// workflow's script predicate can name it.
//
//go:embed installer.expect
var InstallerScript string

// InstallerEntry is the menu entry every installer ISO candidate boots: the netboot
// menu's default, "Install" (no serial console on its command line, so it is booted
// directly with the serial console added last, as bootlab run --iso does).
const InstallerEntry = "install"

// installerSeries picks the kernels of the installer ISO series from the archive's
// kernel series (oldest first) and the release of the installer's own kernel: the
// netboot package as shipped, the archive's package of that same release, then the
// newest later package of the same line and the newest of all (the first kernel ABI
// after the installer's is where its modules stop matching). It needs the installer's
// release in the series and at least one later package.
func installerSeries(series []string, installerRelease string) ([]images.InstallerISOSpec, error) {
	own := "linux-image-" + installerRelease
	at := -1
	for i, p := range series {
		if p == own {
			at = i
		}
	}
	if at < 0 {
		return nil, fmt.Errorf("the archive's kernel series has no %s (the installer's own kernel); apt knows %d kernels", own, len(series))
	}
	later := series[at+1:]
	if len(later) == 0 {
		return nil, fmt.Errorf("the archive has no kernel newer than the installer's %s", installerRelease)
	}
	specs := []images.InstallerISOSpec{
		{Name: "di-netboot"},
		{Name: installerISOName(own), KernelPackage: own},
	}
	line := func(pkg string) string {
		parts := strings.SplitN(strings.TrimPrefix(pkg, "linux-image-"), ".", 3)
		if len(parts) < 2 {
			return pkg
		}
		return parts[0] + "." + parts[1]
	}
	var picks []string
	for i := len(later) - 1; i >= 0; i-- {
		if line(later[i]) == line(own) {
			picks = append(picks, later[i])
			break
		}
	}
	if newest := later[len(later)-1]; len(picks) == 0 || picks[0] != newest {
		picks = append(picks, newest)
	}
	for _, p := range picks {
		specs = append(specs, images.InstallerISOSpec{Name: installerISOName(p), KernelPackage: p})
	}
	return specs, nil
}

// installerISOName is "di-" and the package's release without the flavour:
// linux-image-6.1.0-57-amd64 is di-6.1.0-57.
func installerISOName(pkg string) string {
	return "di-" + strings.TrimSuffix(strings.TrimPrefix(pkg, "linux-image-"), "-amd64")
}

// InstallerSeries builds the installer ISO series (BuildInstallerISO, cached in the
// image cache) and writes into dir its candidate list (candidates.txt: one
// `NAME iso=PATH entry=install profile=debian-installer` line per ISO, oldest first)
// and the predicate (installer.expect, InstallerScript). It returns the list's and the
// script's paths and the ISOs.
func InstallerSeries(ctx context.Context, cache images.Cache, dir string, progress io.Writer) (list, script string, isos []*images.InstallerISO, err error) {
	nb, err := cache.DebianInstallerNetboot(ctx)
	if err != nil {
		return "", "", nil, err
	}
	rel, err := installerRelease(nb.Kernel)
	if err != nil {
		return "", "", nil, err
	}
	series, err := images.KernelSeries(ctx)
	if err != nil {
		return "", "", nil, fmt.Errorf("listing the Debian kernel series: %w", err)
	}
	specs, err := installerSeries(series, rel)
	if err != nil {
		return "", "", nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Debian's installer (netboot %s, modules for %s) with kernels from the archive, oldest first\n", nb.Version, rel)
	for _, s := range specs {
		start := time.Now()
		iso, err := cache.BuildInstallerISO(ctx, s)
		if err != nil {
			return "", "", nil, err
		}
		fmt.Fprintf(progress, "installer ISO %s (kernel %s) ready (%s)\n", iso.Name, iso.KernelRelease, time.Since(start).Round(100*time.Millisecond))
		fmt.Fprintf(&b, "%s iso=%q entry=%s profile=%s\n", iso.Name, iso.Path, InstallerEntry, shell.DebianInstaller.Name)
		isos = append(isos, iso)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	list, script = filepath.Join(dir, "candidates.txt"), filepath.Join(dir, "installer.expect")
	if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
		return "", "", nil, fmt.Errorf("writing the candidate list: %w", err)
	}
	if err := os.WriteFile(script, []byte(InstallerScript), 0o644); err != nil {
		return "", "", nil, fmt.Errorf("writing the predicate: %w", err)
	}
	return list, script, isos, nil
}

func installerRelease(kernel string) (string, error) {
	v, err := isoinspect.KernelVersion(kernel)
	if err != nil {
		return "", fmt.Errorf("reading the installer kernel's release: %w", err)
	}
	f := strings.Fields(v)
	if len(f) == 0 {
		return "", fmt.Errorf("the installer kernel %s has an empty version", kernel)
	}
	return f[0], nil
}

// DemoISOs is `bootlab bisect demo --isos`: the installer ISO series (InstallerSeries)
// bisected with InstallerScript through bisect.Execute exactly as `bootlab bisect
// --candidates FILE --script FILE` would, into a directory under cfg.Notes; the ISOs go
// into cfg.Cache.
func DemoISOs(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	dir := filepath.Join(cfg.Notes, "bisect-demo-isos-"+time.Now().UTC().Format("2006-01-02T15-04-05Z"))
	list, script, _, err := InstallerSeries(ctx, images.Cache(cfg.Cache), dir, stdout)
	if err != nil {
		return err
	}
	bdir := filepath.Join(dir, "bisect")
	args := []string{"--candidates", list, "--script", script, "--dir", bdir, "--probe-timeout", "10m"}
	fmt.Fprintf(stdout, "$ bootlab bisect %s\n", strings.Join(args, " "))
	start := time.Now()
	f := bisect.Flags{List: list, Script: script, Dir: bdir, ProbeTimeout: 10 * time.Minute, Parallel: 1, Flaky: string(bisect.FlakyBad)}
	code := bisect.Execute(ctx, f, nil, &Prober{Profile: shell.DebianInstaller, Config: cfg}, stdout, stderr)
	fmt.Fprintf(stdout, "bisect took %s, exit status %d\n", time.Since(start).Round(time.Second), code)
	if code != bisect.ExitFound {
		return fmt.Errorf("bisect exited %d, not %d (first bad found)", code, bisect.ExitFound)
	}
	return nil
}
