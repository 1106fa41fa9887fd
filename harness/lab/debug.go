package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bootlab/bootlab/harness/capture"
)

// PauseOptions describe one debug pause (KeepForDebug).
type PauseOptions struct {
	// Why names the pause in the message: "failure", "pause after login", ...
	Why string
	// Out gets the message saying how to attach (a terminal, or the test log).
	Out io.Writer
	// Enter, when set, is a terminal: one line read from it ends the pause. Without it
	// the pause lasts Wait (CI has no one to press Enter).
	Enter io.Reader
	// Wait bounds a pause without a terminal (default 10 minutes).
	Wait time.Duration
	// Captures is the standard capture set (default StandardCaptures).
	Captures func(ctx context.Context) error
}

// StandardCaptures takes the capture sets a person usually wants first: the pre-nixos
// units (named by the image profile), the LAN, storage and the kernel log.
func (l *Lab) StandardCaptures(ctx context.Context) error {
	p := l.cfg.VM.Image.Profile
	var units []string
	for _, u := range []string{p.PreNixosUnit, p.SSHUnit, "systemd-networkd.service"} {
		if u != "" {
			units = append(units, u)
		}
	}
	_, err := l.Capture(ctx, capture.Systemd(units...), capture.Network("lan"), capture.Storage(), capture.Kernel())
	return err
}

// KeepForDebug keeps the VM up for a person: the standard captures are taken, the shell is
// handed over (echo on, a readable prompt), the console is served on a socket for
// `bootlab attach`, and `bootlab capture --running` can ask for fresh captures. It
// returns when a line arrives on o.Enter, after o.Wait without one, when ctx ends or
// when QEMU exits; the shell is then taken back for the automation that follows.
// Both `bootlab run --debug/--pause-after` and `go test ./scenarios -boot-image-debug`
// pause through here, so they behave the same.
func (l *Lab) KeepForDebug(ctx context.Context, o PauseOptions) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Wait <= 0 {
		o.Wait = 10 * time.Minute
	}
	if o.Captures == nil {
		o.Captures = l.StandardCaptures
	}
	if !l.vm.Running() {
		fmt.Fprintf(o.Out, "bootlab: %s: the VM is not running, nothing to keep (run directory %s)\n", o.Why, l.Dir())
		return
	}
	hasShell := l.vm.Shell() != nil
	// Captures first: they use the shell, which is then handed to the person.
	if hasShell {
		if err := o.Captures(ctx); err != nil {
			fmt.Fprintf(o.Out, "bootlab: captures incomplete: %v\n", err)
		}
		_ = l.vm.Shell().HandOver(ctx)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	sock, err := l.ServeConsole(sctx)
	if err != nil {
		fmt.Fprintf(o.Out, "bootlab: cannot serve the console: %v\n", err)
		return
	}
	// `bootlab capture --running DIR` from another terminal: take the shell back for the
	// framed captures, then hand it to the person again. A VM without a verified shell
	// (an upstream image driven by its screen) answers with the reason instead.
	// busy is held while a capture request has the shell, so the pause's own TakeBack
	// below never races one (both would drive the same shell); each request is bounded.
	var busy sync.Mutex
	_, _ = l.ServeCaptures(sctx, func(ctx context.Context) error {
		busy.Lock()
		defer busy.Unlock()
		if ctx.Err() != nil {
			// It waited for the pause to end: the shell belongs to the run again.
			return fmt.Errorf("the pause ended before the capture request was served (the run has taken the shell back)")
		}
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		if l.vm.Shell() == nil {
			return fmt.Errorf("this VM has no verified root shell to capture with")
		}
		if err := l.vm.Shell().TakeBack(ctx); err != nil {
			return err
		}
		defer l.vm.Shell().HandOver(ctx)
		return o.Captures(ctx)
	})
	fmt.Fprintf(o.Out, "\nbootlab: %s: the VM is kept running.\n  attach:   bootlab attach %s   (Ctrl-] detaches)\n  console:  %s\n  captures: %s (fresh ones: bootlab capture --running %s)\n",
		o.Why, l.Dir(), sock, l.rec.Path("captures"), l.Dir())
	var enter <-chan struct{}
	var timeout <-chan time.Time
	if o.Enter != nil {
		fmt.Fprintln(o.Out, "  press Enter here to continue")
		done := make(chan struct{})
		// The read cannot be interrupted; on a terminal it ends with the next line, and
		// a process that is going away does not wait for it.
		go func() { _, _ = bufio.NewReader(o.Enter).ReadString('\n'); close(done) }()
		enter = done
	} else {
		fmt.Fprintf(o.Out, "  no terminal: waiting %s, then going on\n", o.Wait)
		timeout = time.After(o.Wait)
	}
	select {
	case <-enter:
	case <-timeout:
	case <-ctx.Done():
	case <-l.vm.Machine().Exited():
	}
	// A capture request in flight finishes first; one that comes later finds its
	// context ended (stop) and does nothing.
	busy.Lock()
	defer busy.Unlock()
	stop() // no new attach or capture clients once the pause ends
	if hasShell && l.vm.Running() && ctx.Err() == nil {
		if err := l.vm.Shell().TakeBack(ctx); err != nil {
			fmt.Fprintf(o.Out, "bootlab: taking the shell back: %v\n", err)
		}
	}
}

// ControllingTerminal opens the process's controlling terminal, /dev/tty, for a pause
// to read Enter from and print to. `go test` gives the test binary no stdin and buffers
// its output without -v, but the binary still has the terminal go test was started
// from. It returns nil without one (CI, a detached job), and when the process is not in
// the terminal's foreground group (started with &): reading would stop it (SIGTTIN).
func ControllingTerminal() *os.File {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	fg, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	if err != nil || fg != unix.Getpgrp() {
		f.Close()
		return nil
	}
	return f
}
