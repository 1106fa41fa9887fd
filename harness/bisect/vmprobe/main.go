package vmprobe

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/bisect"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
)

// DemoScript tells the Debian 6.1 kernels from the 6.12 ones by a sysfs attribute:
// the per-size ("multi-size THP") transparent hugepage controls, which appeared in
// Linux 6.8. Bad means the controls are there.
const DemoScript = `# bisect demo: which kernel first has the mTHP sysfs controls (Linux 6.8+)?
assert-output "uname -r" ^[0-9]+\.[0-9]+\.
run test -d /sys/kernel/mm/transparent_hugepage
run test ! -e /sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled
`

// demoKernels picks four packages from the Debian series: the oldest and newest of the
// older kernel line and of the newest line, so the answer (the first kernel of the new
// line) sits inside the list rather than at an endpoint.
func demoKernels(series []string) ([]string, error) {
	if len(series) < 2 {
		return nil, fmt.Errorf("need at least two kernels in the Debian series, apt knows %d", len(series))
	}
	line := func(pkg string) string {
		v := strings.TrimPrefix(pkg, "linux-image-")
		parts := strings.SplitN(v, ".", 3)
		if len(parts) < 2 {
			return v
		}
		return parts[0] + "." + parts[1]
	}
	newest := line(series[len(series)-1])
	firstNew := len(series) - 1
	for firstNew > 0 && line(series[firstNew-1]) == newest {
		firstNew--
	}
	if firstNew == 0 {
		return nil, fmt.Errorf("the Debian series has only the %s line; the demo needs two", newest)
	}
	var out []string
	seen := map[string]bool{}
	for _, i := range []int{0, firstNew - 1, firstNew, len(series) - 1} {
		if !seen[series[i]] {
			seen[series[i]] = true
			out = append(out, series[i])
		}
	}
	return out, nil
}

// Demo is `make bisect-demo`: the real Debian kernel series (four of it, see
// demoKernels), each booted as the mini image, bisected with DemoScript through
// bisect.Execute exactly as `bootlab bisect --candidates FILE --script FILE` would. The
// bisect directory goes under cfg.Notes; the images go into cfg.Cache.
func Demo(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	notes := cfg.Notes
	series, err := images.KernelSeries(ctx)
	if err != nil {
		return fmt.Errorf("listing the Debian kernel series: %w", err)
	}
	pkgs, err := demoKernels(series)
	if err != nil {
		return err
	}
	dir := filepath.Join(notes, "bisect-demo-"+time.Now().UTC().Format("2006-01-02T15-04-05Z"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the demo directory: %w", err)
	}
	fmt.Fprintf(stdout, "Debian kernel series: %d packages; bisecting %s\n", len(series), strings.Join(pkgs, ", "))
	var list strings.Builder
	list.WriteString("# the Debian kernel series as mini images, oldest first\n")
	for _, pkg := range pkgs {
		start := time.Now()
		img, m, err := lab.MiniImage(ctx, images.Cache(cfg.Cache), images.MiniSpec{KernelPackage: pkg})
		if err != nil {
			return fmt.Errorf("mini image with %s: %w", pkg, err)
		}
		fmt.Fprintf(stdout, "mini image with %s ready (%s)\n", m.KernelVersion, time.Since(start).Round(100*time.Millisecond))
		fmt.Fprintf(&list, "%s kernel=%q initrd=%q append=%q\n", m.KernelVersion, img.Kernel, img.Initrd, img.Append)
	}
	candFile := filepath.Join(dir, "candidates.txt")
	scriptFile := filepath.Join(dir, "mthp.expect")
	if err := os.WriteFile(candFile, []byte(list.String()), 0o644); err != nil {
		return fmt.Errorf("writing the candidate list: %w", err)
	}
	if err := os.WriteFile(scriptFile, []byte(DemoScript), 0o644); err != nil {
		return fmt.Errorf("writing the demo script: %w", err)
	}
	args := []string{"--candidates", candFile, "--script", scriptFile, "--dir", filepath.Join(dir, "bisect"), "--probe-timeout", "10m"}
	fmt.Fprintf(stdout, "$ bootlab bisect %s\n", strings.Join(args, " "))
	start := time.Now()
	f := bisect.Flags{List: candFile, Script: scriptFile, Dir: filepath.Join(dir, "bisect"), ProbeTimeout: 10 * time.Minute,
		Parallel: 1, Flaky: string(bisect.FlakyBad)}
	code := bisect.Execute(ctx, f, nil, &Prober{Profile: shell.Mini, Config: cfg}, stdout, stderr)
	fmt.Fprintf(stdout, "bisect took %s, exit status %d\n", time.Since(start).Round(time.Second), code)
	if code != bisect.ExitFound {
		return fmt.Errorf("bisect exited %d, not %d (first bad found)", code, bisect.ExitFound)
	}
	return nil
}
