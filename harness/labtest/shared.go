package labtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/labtest/vmgate"
)

// Shared is one VM several tests observe without changing it (one boot proves them
// all). It boots on the first Use, each test's verdict is recorded in its run, and
// Close (from TestMain, after m.Run) keeps it for a person once if any test on it
// failed, naming them all, then stops it.
type Shared struct {
	name  string
	opts  []Option
	setup func(ctx context.Context, l *lab.Lab) error

	slot time.Duration // > 0: the boot and setup hold a VM slot (InSlot)
	held time.Duration // how long they held it, once Use returned

	once   sync.Once
	l      *lab.Lab
	err    error
	debug  Debug
	mu     sync.Mutex
	failed []string
}

// NewShared describes a shared VM: opts as for StartT, and setup (may be nil) run once
// after the start, e.g. the checks every test on it asserts. name names it in messages.
func NewShared(name string, setup func(ctx context.Context, l *lab.Lab) error, opts ...Option) *Shared {
	return &Shared{name: name, opts: opts, setup: setup}
}

// InSlot makes the boot and the setup hold one of the binary's VM slots (Slot), expected
// to take expect. Tests on a shared VM can then run in parallel with the others: the VM
// counts against the limit while it boots and runs its setup, and not once it idles.
func (s *Shared) InSlot(expect time.Duration) *Shared {
	s.slot = expect
	return s
}

// Use boots the shared VM if it is not up yet and ties t's verdict to it. It returns the
// lab (nil when it could not start) and the start's or setup's error, which each test
// asserts itself, so every test on a broken VM fails with the cause.
func (s *Shared) Use(t testing.TB) (*lab.Lab, error) {
	t.Helper()
	vmgate.Gate(t)
	s.once.Do(func() {
		if s.slot > 0 {
			defer vmSlots.Acquire(s.slot)()
			// The machine's slot too (other test binaries' guests), unless t holds one
			// already: the tests it would wait on may hold the others.
			if !vmgate.HoldsHostSlot(t) {
				release, err := vmgate.AcquireHostSlot()
				if err != nil {
					s.err = fmt.Errorf("taking a guest slot for the shared machine: %w", err)
					return
				}
				defer release()
			}
		}
		// How long the start and setup held the slot (not the wait for it).
		granted := time.Now()
		defer func() { s.held = time.Since(granted) }()
		c := newConfig(s.name, s.opts)
		s.debug = *c.debug
		if c.needsProbeKernel() {
			if c.lab.VM.ProbeKernel, s.err = probeKernel(); s.err != nil {
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.startTimeout+Scaled(15*time.Minute))
		defer cancel()
		s.l, s.err = lab.Start(ctx, c.startConfig(), lab.With(c.lab))
		if s.err != nil {
			return
		}
		if c.login {
			if _, s.err = s.l.Login(ctx); s.err != nil {
				return
			}
			if s.debug.PauseAfter == "login" {
				Pause(s.l, s.name+": pause after login", s.debug)
			}
		}
		if s.setup != nil {
			s.err = s.setup(ctx, s.l)
		}
	})
	if s.l != nil {
		t.Logf("shared run directory: %s", s.l.Dir())
	}
	began := time.Now()
	t.Cleanup(func() {
		o := runrec.Pass
		var verdict error
		if t.Failed() {
			o, verdict = runrec.Fail, ErrFailed
			s.mu.Lock()
			s.failed = append(s.failed, t.Name())
			s.mu.Unlock()
		}
		if s.l != nil {
			s.l.Scenario(t.Name(), o, verdict, time.Since(began))
		}
	})
	require.True(t, s.l != nil || s.err != nil, "the shared VM %s neither started nor failed", s.name)
	return s.l, s.err
}

// Failed lists the tests that failed on the shared VM.
func (s *Shared) Failed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.failed...)
}

// Close stops the shared VM (if it ever started), first keeping it for a person when a
// test on it failed and debugging was asked for: it outlives each test, so it is kept
// once, after the last of them.
func (s *Shared) Close() error {
	if s.l == nil {
		return nil
	}
	failed := s.Failed()
	var verdict error
	if len(failed) > 0 || s.err != nil {
		verdict = errors.Join(errors.New("a test on the shared VM failed: "+strings.Join(failed, ", ")), s.err)
		if s.debug.OnFailure && s.l.Running() {
			Pause(s.l, "the shared VM "+s.name+" ("+strings.Join(failed, ", ")+") failed", s.debug)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(3*time.Minute))
	defer cancel()
	return s.l.Close(ctx, verdict)
}
