package report

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Browsers tried by Screenshot, in order (Debian's package is `chromium`).
var Browsers = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Screenshot renders htmlPath in headless Chromium (1200x900) and writes pngPath. It
// fails, rather than quietly producing nothing, when no browser is installed (`apt-get
// install chromium`) or the PNG is missing or empty. The browser runs with a
// throw-away profile and every background network feature off: a report must render
// without the network.
func Screenshot(ctx context.Context, htmlPath, pngPath string) error {
	var bin string
	for _, b := range Browsers {
		if p, err := exec.LookPath(b); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		return errors.New("screenshot: no Chromium found (install the Debian package `chromium`)")
	}
	absHTML, err := filepath.Abs(htmlPath)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	absPNG, err := filepath.Abs(pngPath)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	if _, err := os.Stat(absHTML); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	profile, err := os.MkdirTemp("", "bootlab-chromium-")
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	defer os.RemoveAll(profile)
	_ = os.Remove(absPNG)
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir="+profile, "--screenshot="+absPNG, "--window-size=1200,900",
		"file://"+absHTML)
	// Chromium leaves helper processes holding the output pipes; without WaitDelay a
	// finished screenshot could still block Wait until they exit.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("screenshot: %s: %w\n%s", filepath.Base(bin), err, tail(out, 2000))
	}
	st, err := os.Stat(absPNG)
	if err != nil {
		return fmt.Errorf("screenshot: chromium exited cleanly but wrote no PNG: %w\n%s", err, tail(out, 2000))
	}
	if st.Size() < 1000 {
		return fmt.Errorf("screenshot: %s is only %d bytes", absPNG, st.Size())
	}
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
