package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/harness/config"
	"github.com/bootlab/bootlab/harness/lab"
)

// RestoreResult measures the boot-once-restore-many lever on the fixture: one cold
// (direct) boot to a verified root shell, its state saved, then a second QEMU resuming
// from that state to a verified root shell again.
type RestoreResult struct {
	Load string
	// ColdRoot is the cold boot's spawn -> verified root shell.
	ColdRoot time.Duration
	// Save is how long saving the state took, StateBytes the state file's size.
	Save       time.Duration
	StateBytes int64
	// Running is the restored QEMU's spawn -> guest running again (the state read);
	// Root its spawn -> verified root shell (the shell re-verified with a framed id -u).
	Running, Root        time.Duration
	ColdDir, RestoredDir string
	Err                  error
}

// RunRestore boots the fixture once, saves its state at the root shell, and restores it
// into a new QEMU on the same disk. The guest resumes with pre-nixos done (the state is
// taken after login, not before pre-nixos starts, as the scenarios would need): what it
// measures is the price of a restore against a cold boot, the lever's size.
func RunRestore(ctx context.Context, cfg config.Config, progress io.Writer) RestoreResult {
	res := RestoreResult{Load: loadAvg()}
	say := func(f string, a ...any) {
		if progress != nil {
			fmt.Fprintf(progress, "bootlab bench: "+f+"\n", a...)
		}
	}
	img, err := variantImage(ctx, images.Cache(cfg.Cache), BootVariant{Name: "fixture-direct", Image: "fixture", Boot: lab.BootDirect})
	if err != nil {
		res.Err = err
		return res
	}
	spec := fixtureSpec(ctx, images.Cache(cfg.Cache), img)

	say("restore: cold boot of the fixture (direct)")
	cold, err := lab.Start(ctx, cfg, lab.Slug("bench-restore-cold"), lab.Machine(spec), lab.Progress(progress), lab.Captures(lab.CapturesNone), lab.KeepDisks(true))
	if err != nil {
		res.Err = err
		return res
	}
	res.ColdDir = cold.Dir()
	if _, err := cold.Login(ctx); err != nil {
		res.Err = errors.Join(err, cold.Close(context.WithoutCancel(ctx), err))
		return res
	}
	for _, m := range cold.Milestones() {
		if m.Name == "root_shell" {
			res.ColdRoot = m.At
		}
	}
	state := filepath.Join(cold.Dir(), "guest.state")
	began := time.Now()
	err = cold.SaveState(ctx, state)
	res.Save = time.Since(began)
	if fi, serr := os.Stat(state); serr == nil {
		res.StateBytes = fi.Size()
	}
	accel := cold.Metadata().Accel.Name
	_ = cold.CloseSaved(ctx, "state saved for the restore measurement")
	if err != nil {
		res.Err = err
		return res
	}
	say("restore: saved %d MiB of state in %s; restoring", res.StateBytes>>20, res.Save.Round(time.Millisecond))

	rspec := spec
	rspec.RestoreFrom = state
	rspec.Disks = []lab.Disk{{Path: filepath.Join(res.ColdDir, "disk0.img")}}
	rspec.Accel = accel // the donor's verdict; a second probe would boot another kernel first
	spawn := time.Now() // lab.Start spawns QEMU at once (the ISO's provenance is cached)
	warm, err := lab.Start(ctx, cfg, lab.Slug("bench-restore-warm"), lab.Machine(rspec), lab.Progress(progress), lab.Captures(lab.CapturesNone))
	if err != nil {
		res.Err = err
		return res
	}
	res.RestoredDir = warm.Dir()
	err = warm.WaitRunning(ctx)
	res.Running = time.Since(spawn)
	if err == nil {
		_, err = warm.ResumeShell(ctx, 30*time.Second)
		res.Root = time.Since(spawn)
	}
	res.Err = errors.Join(err, warm.Close(context.WithoutCancel(ctx), err))
	return res
}

// RestoreTable is the measurement as Markdown.
func RestoreTable(r RestoreResult) string {
	s := "| measure | time |\n|---|---|\n"
	s += fmt.Sprintf("| cold boot: spawn -> verified root | %.1f s |\n", r.ColdRoot.Seconds())
	s += fmt.Sprintf("| saving the state (%d MiB) | %.1f s |\n", r.StateBytes>>20, r.Save.Seconds())
	s += fmt.Sprintf("| restore: spawn -> guest running | %.1f s |\n", r.Running.Seconds())
	s += fmt.Sprintf("| restore: spawn -> verified root again | %.1f s |\n", r.Root.Seconds())
	s += fmt.Sprintf("\nload when it started: %s; run directories %s, %s\n", r.Load, r.ColdDir, r.RestoredDir)
	if r.Err != nil {
		s += "\nerror: " + r.Err.Error() + "\n"
	}
	return s
}
