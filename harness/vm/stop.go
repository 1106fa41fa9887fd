package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bootlab/bootlab/harness/console"
	"github.com/bootlab/bootlab/harness/qemu"
	"github.com/bootlab/bootlab/harness/shell"
)

// Console evidence of how a guest takes a typed poweroff (normalised text, after what
// was typed).
var (
	// poweroffRefused is a shell or tool saying the command will not run.
	poweroffRefused = regexp.MustCompile(`(?i)[^\n]*(not found|can't|cannot|permission denied|access denied|must be (root|superuser)|failed to [a-z]|interactive authentication required|operation not permitted)[^\n]*`)
	// shutdownProgress is the guest going down: busybox init's and sysvinit's
	// announcements, systemd's targets and its final stage, the kernel's last words.
	shutdownProgress = regexp.MustCompile(`(?i)(the system is going down|sent sig(term|kill) to all|will now (halt|power ?off|restart)|reached target[^\n]*(power-off|shutdown|final)|systemd-shutdown|powering off|unmounting|requesting system (poweroff|halt)|reboot: (power down|system halted|restarting))`)
)

// SetQuickStop tells Stop that nothing on the guest needs a clean shutdown any more,
// and why (a probe whose verdict is in): it then syncs and quits. A VM whose Spec asks
// for a clean shutdown (QuickStop empty) keeps that only while nothing says otherwise.
func (v *VM) SetQuickStop(why string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.quickStop = why
}

// Stop ends the guest and reaps QEMU; it is safe to call more than once and always
// closes the logs. When nothing on the guest needs a clean shutdown (Spec.QuickStop,
// SetQuickStop) it syncs and quits; otherwise the guest powers itself off, with each
// stage it cannot honour skipped and each it shows it will not act on cut short.
func (v *VM) Stop(ctx context.Context) (qemu.StopStage, error) {
	v.mu.Lock()
	quick := v.quickStop
	v.mu.Unlock()
	if quick == "" {
		quick = v.spec.QuickStop
	}
	return v.stop(ctx, quick)
}

// StopClean powers the guest off the way it would power itself off, whatever
// Spec.QuickStop says: for a shutdown that is itself under test.
func (v *VM) StopClean(ctx context.Context) (qemu.StopStage, error) { return v.stop(ctx, "") }

// StopReport is what the stop did, stage by stage (empty before Stop).
func (v *VM) StopReport() qemu.StopReport {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stopReport
}

func (v *VM) stop(ctx context.Context, quick string) (qemu.StopStage, error) {
	v.mu.Lock()
	if v.stopped {
		st := v.stopStage
		v.mu.Unlock()
		return st, nil
	}
	v.stopped = true
	v.mu.Unlock()
	defer v.closeFiles()
	if v.machine == nil {
		return qemu.StopAlreadyExited, nil
	}
	plan := v.stopPlan(ctx, quick)
	v.log.Info("vm.stop_plan", "quick", quick, "guest_skip", plan.GuestSkip, "powerdown_skip", plan.PowerdownSkip, "sync", plan.Sync != nil)
	// Say what the stop waits for: a person watching a slow stop should not guess.
	switch {
	case quick != "":
		v.progress("stopping: sync and quit (" + quick + ")")
	case plan.Guest != nil:
		v.progress("stopping: the guest's own poweroff (up to " + plan.Timeouts.Guest.String() + "; ends early if the guest refuses)")
	default:
		v.progress("stopping: " + plan.GuestSkip + ", so QEMU's stages")
	}
	began := time.Now()
	rep, err := v.machine.StopWith(ctx, plan)
	v.progress(fmt.Sprintf("stopped by %s in %.2fs", rep.Stage, time.Since(began).Seconds()))
	v.mu.Lock()
	v.stopStage, v.stopReport = rep.Stage, rep
	// Kept here for Milestones(); run records get the shutdown as a span with its
	// true duration from the caller.
	v.milestones = append(v.milestones, Milestone{Name: "shutdown", At: time.Since(v.spawned)})
	v.mu.Unlock()
	v.log.Info("vm.stopped", "stage", string(rep.Stage), "exit", v.machine.ExitStatus())
	// Let the drain goroutine read what QEMU wrote last before the logs close.
	select {
	case <-v.console.Done():
	case <-time.After(2 * time.Second):
	}
	_ = os.RemoveAll(v.machine.Files.Dir)
	return rep.Stage, err
}

// shellUsable says why the root shell cannot take a typed command, or "".
func (v *VM) shellUsable() string {
	switch {
	case v.sh == nil:
		return "no root shell was reached"
	case v.sh.UID() != 0:
		return "the shell is not root"
	case v.sh.Gone() != nil:
		// A shell reported gone (a command ended it) is not root any more: typing
		// into whatever shell is left would only wait out the stage.
		return "the root shell is gone"
	case v.console.Err() != nil:
		return "the console is closed"
	}
	return ""
}

func (v *VM) stopPlan(ctx context.Context, quick string) qemu.StopPlan {
	t := v.spec.Timeouts.Stop
	plan := qemu.StopPlan{Timeouts: t}
	noShell := v.shellUsable()
	if quick != "" {
		plan.GuestSkip = "no clean shutdown needed: " + quick
		plan.PowerdownSkip = plan.GuestSkip
		if noShell == "" {
			plan.Sync = v.syncGuest
		}
		return plan
	}
	prof := v.spec.Image.Profile
	cmd := prof.PoweroffCommand(v.spec.Image.Poweroff)
	var typedAt atomic.Int64
	if noShell != "" {
		plan.GuestSkip = noShell
	} else {
		plan.Guest = func(ctx context.Context) error {
			typedAt.Store(v.console.Pos())
			return v.sh.Poweroff(ctx, cmd)
		}
	}
	switch {
	case prof.IgnoresACPIPowerdown:
		plan.PowerdownSkip = "the image profile says the guest ignores the power button"
	case noShell == "":
		if why := v.noACPIHandler(ctx); why != "" {
			plan.PowerdownSkip = why
		}
	}
	prompt := prof.ShellPrompt
	if prompt == nil {
		prompt = shell.DefaultShellPrompt
	}
	grace := t.Grace
	if grace <= 0 {
		grace = 2 * time.Second
	}
	// systemctl returns as soon as systemd has queued the job, so its prompt coming
	// back says nothing; only a refusal does.
	async := strings.HasPrefix(strings.TrimSpace(cmd), "systemctl")
	plan.Watch = func(ctx context.Context, stage qemu.StopStage) string {
		if stage != qemu.StopGuest {
			return "" // the power button's effect is not on the console: wait it out
		}
		return watchPoweroff(ctx, v.console, typedAt.Load(), prompt, grace, async)
	}
	return plan
}

// watchPoweroff reads the console after a typed poweroff (from pos) and returns why the
// guest will not act on it: it refused, or its prompt came back (unless async), and no
// shutdown progress followed within grace. It returns "" when the guest shows progress
// (the stage then waits for QEMU to exit) or ctx ends.
func watchPoweroff(ctx context.Context, con *console.Console, pos int64, prompt *regexp.Regexp, grace time.Duration, async bool) string {
	progress := console.Pattern{Name: "progress", Re: shutdownProgress}
	for {
		m, err := con.Expect(ctx, pos, progress,
			console.Pattern{Name: "refused", Re: poweroffRefused},
			console.Pattern{Name: "prompt", Re: prompt})
		if err != nil {
			return ""
		}
		var why string
		switch m.Name {
		case "progress":
			return ""
		case "refused":
			why = strings.TrimSpace(m.Text)
		case "prompt":
			if async {
				pos = m.End
				continue
			}
			why = "the shell's prompt came back"
		}
		// A refusal or a prompt can precede the real thing (a first command in a
		// list failing): progress within the grace still counts.
		gctx, cancel := context.WithTimeout(ctx, grace)
		_, err = con.Expect(gctx, m.End, progress)
		cancel()
		if err == nil {
			return ""
		}
		if ctx.Err() != nil {
			return ""
		}
		return why + " and no shutdown progress followed within " + grace.String()
	}
}

// syncGuest flushes the guest's writes with the root shell before a quit. The shell's
// lock may be held by a command still in flight; the stop does not wait on it past ctx.
func (v *VM) syncGuest(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		r, err := v.sh.Run(ctx, "sync", shell.Timeout(v.spec.Timeouts.Stop.Sync), shell.AllowFail())
		if err == nil && r.ExitStatus != 0 {
			err = errors.New("sync exited " + strconv.Itoa(r.ExitStatus))
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acpiHandlers are processes that act on QEMU's ACPI power button.
const acpiHandlers = `systemd|systemd-logind|elogind|acpid`

// noACPIHandler asks the guest, through the root shell, whether anything would act on
// the power button; it says why not, or "" (also when it cannot tell).
func (v *VM) noACPIHandler(ctx context.Context) string {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// /proc/*/comm is there on every Linux guest, busybox or not; grep exits 1 on no match.
	r, err := v.sh.Run(cctx, "grep -lxE '"+acpiHandlers+"' /proc/[0-9]*/comm 2>/dev/null | head -n 1", shell.AllowFail())
	if err != nil {
		v.log.Warn("vm.acpi_check_failed", "error", err.Error())
		return ""
	}
	if strings.TrimSpace(string(r.Output)) == "" {
		return "no process on the guest handles the power button (none of " + acpiHandlers + " runs)"
	}
	return ""
}
