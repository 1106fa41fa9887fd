// Command bootlab-images builds (or finds in the cache) bootlab's boot images and prints
// their paths as JSON, for the Makefile and for people poking at images by hand:
//
//	go run ./artifacts/images/cmd/bootlab-images mini [-kernel PKG] [-version V] [-autologin]
//	go run ./artifacts/images/cmd/bootlab-images fixture -root-key FILE [-bin DIR] [-break-unit]
//	go run ./artifacts/images/cmd/bootlab-images netboot
//	go run ./artifacts/images/cmd/bootlab-images kernels
//	go run ./artifacts/images/cmd/bootlab-images cachedir
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/progress"
)

func main() {
	// slog lines go through the progress line so a live line never shares theirs.
	pl := progress.For(os.Stderr)
	images.SetProgress(pl)
	slog.SetDefault(slog.New(slog.NewTextHandler(pl, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		usage()
	}
	out, err := dispatch(ctx, os.Args[1], os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bootlab-images:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "bootlab-images:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: bootlab-images mini|fixture|netboot|kernels|cachedir [flags]")
	os.Exit(2)
}

// cacheRoot is where the images go: $BOOTLAB_CACHE, else bootlab's default under the
// user's cache directory (harness/config documents the same rule; this command is
// below harness and reads the variable itself, at its edge).
func cacheRoot() images.Cache {
	if d := os.Getenv("BOOTLAB_CACHE"); d != "" {
		return images.Cache(d)
	}
	if d, err := os.UserCacheDir(); err == nil {
		return images.Cache(filepath.Join(d, "bootlab"))
	}
	return images.Cache(filepath.Join(os.TempDir(), "bootlab-cache"))
}

func dispatch(ctx context.Context, cmd string, args []string) (any, error) {
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	cache := cacheRoot()
	switch cmd {
	case "mini":
		var spec images.MiniSpec
		fs.StringVar(&spec.KernelPackage, "kernel", "", "kernel package (default: linux-image-amd64's dependency)")
		fs.StringVar(&spec.Version, "version", "", "version string baked into /etc/mini-version")
		fs.BoolVar(&spec.AutoLogin, "autologin", false, "log the user in on ttyS0 without a prompt")
		_ = fs.Parse(args)
		return cache.BuildMini(ctx, spec)
	case "fixture":
		var spec images.FixtureSpec
		fs.StringVar(&spec.RootKeyFile, "root-key", "", "root's authorized public key file (required)")
		fs.StringVar(&spec.BinDir, "bin", "", "directory with prebuilt static pre-nixos binaries (default: build them from this checkout)")
		fs.StringVar(&spec.SourceDir, "src", "", "bootlab checkout to build pre-nixos from (default: found from the working directory)")
		fs.StringVar(&spec.BreakUnit, "break-unit", "", "replace pre-nixos.service's ExecStart (negative tests), e.g. /bin/false")
		_ = fs.Parse(args)
		if spec.RootKeyFile == "" {
			return nil, fmt.Errorf("fixture needs -root-key FILE")
		}
		return cache.BuildFixtureISO(ctx, spec)
	case "netboot":
		_ = fs.Parse(args)
		return cache.DebianInstallerNetboot(ctx)
	case "kernels":
		_ = fs.Parse(args)
		return images.KernelSeries(ctx)
	case "cachedir":
		_ = fs.Parse(args)
		return cache.Dir(), nil
	}
	usage()
	return nil, nil
}
