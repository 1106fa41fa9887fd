package labtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/artifacts/images"
	"github.com/bootlab/bootlab/artifacts/keys"
	"github.com/bootlab/bootlab/artifacts/runrec"
	"github.com/bootlab/bootlab/harness/capture"
	"github.com/bootlab/bootlab/harness/lab"
	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/harness/verify"
	"github.com/bootlab/bootlab/provisioner/status"
)

// Machine is one booted VM bound to one test, read the way the NixOS test driver's
// `machine` is: each method states an intent (a command that must succeed, a unit to
// wait for, a file to appear) and fails the test itself when the intent is not met,
// naming what it waited for, the run directory and the serial console's tail, within
// the scaled default deadline. A scenario built on it needs no context, no cancel and
// no error check; the VM is stopped and its verdict recorded when the test ends
// (StartT), or earlier by Shutdown.
type Machine struct {
	t     testing.TB
	lab   *lab.Lab
	key   *keys.Pair
	iso   *images.ISO
	disks []lab.Disk

	// pre-nixos's checks: one set per guest, so a shared machine runs them once.
	pre *preState
}

// Default deadlines of a Machine's intents, before the timeout scale.
const (
	commandDeadline = 3 * time.Minute
	waitDeadline    = 5 * time.Minute
	storageDeadline = 10 * time.Minute
)

// DiskSpec describes one disk of a Machine (lab.Disk: name, size, bus, rotation
// rate, serial, a seed run on the host, or the path of an existing file).
type DiskSpec = lab.Disk

// Disk is a blank virtio disk of mb MiB.
func Disk(name string, mb int) DiskSpec { return DiskSpec{Name: name, SizeMB: mb} }

// FixtureSpec picks the fixture ISO variant the machine boots (the standard fixture,
// or one with a broken pre-nixos or another root key); Boot builds it once per process.
func FixtureSpec(s images.FixtureSpec) Option {
	return func(c *config) { spec := s; c.fixture = &spec }
}

// warmVariant is how a warm start makes spec's image from the standard fixture's
// saved guest (lab.Variant: spec's files written before the release), or nil when spec
// is the standard fixture, or when the standard image is not the one spec varies: an
// -iso image stands in for it, or -break-unit changed it.
func warmVariant(t *testing.T, spec images.FixtureSpec) *lab.Variant {
	t.Helper()
	if *flagISO != "" || *flagBreakUnit != "" {
		return nil
	}
	files, err := spec.VariantFiles()
	require.NoError(t, err, "the fixture variant's files")
	if len(files) == 0 {
		return nil
	}
	base, _, _ := Fixture(t, images.FixtureSpec{})
	return &lab.Variant{Base: base, Files: files}
}

// Standard boots the standard fixture ISO (the image under test: -iso, or the one built
// from Debian packages).
func Standard() Option { return FixtureSpec(images.FixtureSpec{}) }

// BrokenPreNixos boots a fixture whose pre-nixos unit runs cmd instead (/bin/false: it
// fails; /bin/true: it does nothing, leaving the disks to the test).
func BrokenPreNixos(cmd string) Option { return FixtureSpec(images.FixtureSpec{BreakUnit: cmd}) }

// ImageRootKey boots a fixture that carries authorizedKey for root instead of bootlab's.
func ImageRootKey(authorizedKey string) Option {
	return FixtureSpec(images.FixtureSpec{RootKey: authorizedKey})
}

// SharedAs makes the machine one VM that every test naming it observes (Shared): the
// first Boot starts it, the others wait for that start and see the same guest, each
// test's verdict is recorded in its run, and it stops when the binary's tests are done
// (Main). The tests on it must only look. It implies t.Parallel.
func SharedAs(name string) Option { return func(c *config) { c.shared = name } }

var (
	sharedMu       sync.Mutex
	sharedMachines = map[string]*sharedMachine{}
)

type sharedMachine struct {
	once     sync.Once
	measured sync.Once // records how long the start and the checks held the slot
	s        *Shared
	m        *Machine
}

// preState is pre-nixos's checks on one guest and, once WaitForPreNixos ran them all,
// their result.
type preState struct {
	once sync.Once
	p    *verify.PreNixos
	err  error
}

// closeSharedMachines stops every shared machine (Main, after the tests).
func closeSharedMachines() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, sm := range sharedMachines {
		if sm.s != nil {
			_ = sm.s.Close()
		}
	}
}

// Boot starts a VM for t, logged in as root with a verified root shell, and returns it
// as a Machine. A fixture option (Standard, BrokenPreNixos, ImageRootKey, FixtureSpec)
// builds or finds that ISO and its root key; without one, Image says what boots. The
// test holds one of the binary's VM slots (Slot), expected to take what it took last
// time (ExpectedDuration), so it runs beside the others, longest first.
func Boot(t *testing.T, opts ...Option) *Machine {
	t.Helper()
	probe := newConfig(t.Name(), opts)
	// The fixture and login options added below change neither the disks nor sharing.
	m := &Machine{t: t, disks: probe.lab.VM.Disks, pre: &preState{}}
	if probe.fixture != nil {
		img, iso, key := Fixture(t, *probe.fixture)
		m.iso, m.key = iso, key
		opts = append([]Option{Image(img), RootKey(key.Fingerprint)}, opts...)
		if probe.warm != "" {
			if v := warmVariant(t, *probe.fixture); v != nil {
				opts = append(opts, func(c *config) { c.lab.Variant = v })
			}
		}
	}
	opts = append(opts, Login())
	if probe.shared != "" {
		return bootShared(t, probe.shared, m, opts)
	}
	holdSlot(t)
	m.lab = StartT(t, opts...)
	return m
}

// bootShared starts (once) or joins the shared machine name.
func bootShared(t *testing.T, name string, m *Machine, opts []Option) *Machine {
	t.Helper()
	parallel(t)
	sharedMu.Lock()
	sm := sharedMachines[name]
	if sm == nil {
		sm = &sharedMachine{}
		sharedMachines[name] = sm
	}
	sharedMu.Unlock()
	sm.once.Do(func() {
		all := append([]Option{Slug(name)}, opts...)
		sm.m = &Machine{t: t, key: m.key, iso: m.iso, disks: m.disks, pre: m.pre}
		// Every test on a shared machine observes one result, so a machine that runs
		// pre-nixos has its checks run once, here, while the start holds its VM slot.
		setup := func(ctx context.Context, l *lab.Lab) error {
			if l.Profile().PreNixosUnit == "" {
				return nil
			}
			sm.m.lab = l
			sm.m.pre.once.Do(func() { sm.m.pre.err = sm.m.checks().Run(ctx) })
			return nil
		}
		sm.s = NewShared(name, setup, all...).InSlot(ExpectedDuration(name))
	})
	l, err := sm.s.Use(t)
	sm.measured.Do(func() {
		if err == nil {
			RecordDuration(name, sm.s.held)
		}
	})
	require.NoError(t, err, "starting the shared VM %s", name)
	// Each test gets its own view of the one guest, bound to its own t.
	return &Machine{t: t, lab: l, key: sm.m.key, iso: sm.m.iso, disks: sm.m.disks, pre: sm.m.pre}
}

// held records which tests already hold a slot: a test that boots twice (a seed boot,
// then the boot under test) holds one slot for both.
var held sync.Map

// HoldSlot runs t in parallel with the other tests and holds one of the binary's VM
// slots until t ends (Slot), expected to take what t took when last measured
// (ExpectedDuration); the time it then takes is recorded for the next run. Boot calls
// it; a test that boots otherwise calls it first. A second call in one test is a no-op.
func HoldSlot(t *testing.T) { holdSlot(t) }

func holdSlot(t *testing.T) {
	if _, dup := held.LoadOrStore(t, true); dup {
		return
	}
	Slot(t, ExpectedDuration(t.Name()))
	granted := time.Now()
	t.Cleanup(func() {
		held.Delete(t)
		if !t.Failed() && !t.Skipped() {
			RecordDuration(t.Name(), time.Since(granted))
		}
	})
}

// Lab is the machine's lab, for the few tests about the harness itself.
func (m *Machine) Lab() *lab.Lab { return m.lab }

// Dir is the run directory.
func (m *Machine) Dir() string { return m.lab.Dir() }

// Profile is the image's profile: unit names, key paths, prompts.
func (m *Machine) Profile() shell.Profile { return m.lab.Profile() }

// Key is the root key embedded in a fixture image (nil for other images).
func (m *Machine) Key() *keys.Pair { return m.key }

// ISOPath is the fixture ISO the machine booted ("" for other images).
func (m *Machine) ISOPath() string {
	if m.iso == nil {
		return ""
	}
	return m.iso.Path
}

// Metadata is the run's metadata.json as it stands.
func (m *Machine) Metadata() runrec.Metadata { return m.lab.Metadata() }

// HasMilestone says whether the run's timeline has the milestone name.
func (m *Machine) HasMilestone(name string) bool {
	md := m.lab.Metadata()
	_, ok := md.Milestone(name)
	return ok
}

// SSHAddr is the loopback address SSH to the guest is forwarded to ("" without one).
func (m *Machine) SSHAddr() string { return m.lab.SSHAddr() }

// Mark records a milestone in the run's timeline.
func (m *Machine) Mark(name string) { m.lab.Mark(name) }

// Disks are the machine's disks as files of this run: passed to another Boot, the next
// machine boots on the same disks (Shutdown this one first).
func (m *Machine) Disks() Option {
	d := append([]DiskSpec(nil), m.disks...)
	for i := range d {
		if d[i].Path == "" {
			d[i].Path = filepath.Join(m.Dir(), d[i].Name)
		}
	}
	return Disks(d...)
}

// deadline is a context bounded by the scaled default d.
func deadline(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), Scaled(d))
}

// failf fails the test with what was being done, the run directory and the tail of
// the guest's serial console.
func (m *Machine) failf(err error, format string, a ...any) {
	m.t.Helper()
	if err == nil {
		return
	}
	what := fmt.Sprintf(format, a...)
	require.NoError(m.t, err, "%s (run directory %s)\nserial console, last lines:\n%s", what, m.Dir(), m.SerialTail(15))
}

// SerialTail is the last n lines of the guest's serial console.
func (m *Machine) SerialTail(n int) string {
	b, err := m.lab.SerialLog()
	if err != nil {
		return "(no serial log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Serial is everything the guest wrote on its serial console so far (its own bytes:
// the harness's keystrokes are not in it).
func (m *Machine) Serial() string {
	m.t.Helper()
	b, err := m.lab.SerialLog()
	m.failf(err, "reading the serial log")
	return string(b)
}

// Succeed runs cmd as root, which must exit 0, and returns its output.
func (m *Machine) Succeed(cmd string) string {
	m.t.Helper()
	ctx, cancel := deadline(commandDeadline)
	defer cancel()
	out, err := m.lab.Succeed(ctx, cmd)
	m.failf(err, "running %q", cmd)
	return out
}

// Fail runs cmd, which must exit non-zero, and returns its output.
func (m *Machine) Fail(cmd string) string {
	m.t.Helper()
	ctx, cancel := deadline(commandDeadline)
	defer cancel()
	out, err := m.lab.Fail(ctx, cmd)
	m.failf(err, "running %q, which must fail", cmd)
	return out
}

// Execute runs cmd and returns its output and exit status, whatever the status.
func (m *Machine) Execute(cmd string) (string, int) {
	m.t.Helper()
	ctx, cancel := deadline(commandDeadline)
	defer cancel()
	out, st, err := m.lab.Status(ctx, cmd)
	m.failf(err, "running %q", cmd)
	return out, st
}

// WaitForUnit waits until unit is active (or one of want), failing at once on a unit
// that failed, and returns its state.
func (m *Machine) WaitForUnit(unit string, want ...string) string {
	m.t.Helper()
	ctx, cancel := deadline(waitDeadline)
	defer cancel()
	st, err := m.lab.WaitUnit(ctx, unit, want...)
	m.failf(err, "waiting for unit %s", unit)
	return st
}

// WaitUntilSucceeds runs cmd until it exits 0 and returns that output; what names the
// wait in messages.
func (m *Machine) WaitUntilSucceeds(what, cmd string) string {
	m.t.Helper()
	ctx, cancel := deadline(waitDeadline)
	defer cancel()
	out, err := m.lab.WaitUntil(ctx, what, cmd)
	m.failf(err, "waiting for %s (%q)", what, cmd)
	return out
}

// WaitForFile waits until path exists in the guest.
func (m *Machine) WaitForFile(path string) {
	m.t.Helper()
	ctx, cancel := deadline(waitDeadline)
	defer cancel()
	m.failf(m.lab.WaitFile(ctx, path), "waiting for %s", path)
}

// WaitForConsole waits until the guest's console shows a line matching re and returns
// the match.
func (m *Machine) WaitForConsole(re string) string {
	m.t.Helper()
	ctx, cancel := deadline(waitDeadline)
	defer cancel()
	out, err := m.lab.WaitConsole(ctx, regexp.MustCompile(re))
	m.failf(err, "waiting for %q on the console", re)
	return out
}

// Capture runs cmd, which must succeed, keeps its output as captures/<name> in the run
// directory, and returns it.
func (m *Machine) Capture(name, cmd string) string {
	m.t.Helper()
	out := m.Succeed(cmd)
	dir := filepath.Join(m.Dir(), "captures")
	m.failf(os.MkdirAll(dir, 0o755), "making %s", dir)
	m.failf(os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644), "writing capture %s", name)
	return out
}

// Evidence takes the boot evidence now (journal, units, network, storage captures) and
// returns what was taken.
func (m *Machine) Evidence() capture.Index {
	m.t.Helper()
	ctx, cancel := deadline(waitDeadline)
	defer cancel()
	idx, err := m.lab.Evidence(ctx)
	m.failf(err, "taking the boot evidence")
	return idx
}

// Snapshot copies the run directory's evidence as it stands to a directory of its own
// (for a diff against another run) and returns its path.
func (m *Machine) Snapshot(name string) string {
	m.t.Helper()
	dir, err := m.lab.Snapshot(name)
	m.failf(err, "snapshotting the run as %s", name)
	return dir
}

// Shutdown powers the guest off cleanly and waits for QEMU to exit: its disks can be
// read on the host, or booted again (Disks), afterwards.
func (m *Machine) Shutdown() {
	m.t.Helper()
	ctx, cancel := deadline(commandDeadline)
	defer cancel()
	_, err := m.lab.PowerOff(ctx)
	m.failf(err, "powering the guest off")
}

// Close ends the run now, as StartT would at the test's end: for a test that compares
// this run, finished, with another. verdict is the run's (nil: pass, unless the test
// has failed already).
func (m *Machine) Close(verdict error) {
	m.t.Helper()
	if verdict == nil && m.t.Failed() {
		verdict = ErrFailed
	}
	ctx, cancel := deadline(commandDeadline)
	defer cancel()
	require.NoError(m.t, m.lab.Close(ctx, verdict), "closing the run %s", m.Dir())
}

// --- pre-nixos: what it promises, as intents -------------------------------------------

// Storage verdicts pre-nixos writes to storage-status (STATE and DETAIL).
var (
	// Provisioned: blank disks provisioned at boot.
	Provisioned = StorageVerdict{status.StateApplied, status.DetailAutoApplied}
	// PlanOnly: a disk held data, so pre-nixos only planned.
	PlanOnly = StorageVerdict{status.StatePlanOnly, status.DetailExistingStorage}
	// ForceCleaned: the data was torn down under force and the disks provisioned.
	ForceCleaned = StorageVerdict{status.StateApplied, status.DetailForceCleanup}
)

// StorageVerdict is a STATE and DETAIL of storage-status.
type StorageVerdict struct{ State, Detail string }

func (m *Machine) checks() *verify.PreNixos {
	if m.pre == nil {
		m.pre = &preState{}
	}
	if m.pre.p == nil {
		t, l := m.t, m.lab
		m.pre.p = &verify.PreNixos{Lab: l, Key: m.key, Out: LogWriter(t),
			Pause:          func(stage string) { PauseAt(t, l, stage, FlagDebug()) },
			StorageTimeout: Scaled(storageDeadline), NetworkTimeout: Scaled(waitDeadline), SSHTimeout: Scaled(waitDeadline)}
	}
	return m.pre.p
}

// WaitForStorage waits for pre-nixos to finish and write storage-status, checks it says
// want, and returns the status file.
func (m *Machine) WaitForStorage(want StorageVerdict) map[string]string {
	m.t.Helper()
	p := m.checks()
	p.WantState, p.WantDetail = want.State, want.Detail
	ctx, cancel := deadline(storageDeadline + time.Minute)
	defer cancel()
	m.failf(p.CheckStorage(ctx), "pre-nixos's storage verdict")
	return p.Storage
}

// WaitForLAN waits for the NIC renamed lan to lease an IPv4 address and pre-nixos to
// announce it on the console, and returns the address.
func (m *Machine) WaitForLAN() string {
	m.t.Helper()
	ctx, cancel := deadline(waitDeadline + time.Minute)
	defer cancel()
	p := m.checks()
	m.failf(p.CheckNetwork(ctx), "the LAN address")
	return p.IPv4
}

// WaitForSSH logs in over SSH as root with the embedded key, the host key pinned from
// the console, and checks `id -un` says root.
func (m *Machine) WaitForSSH() {
	m.t.Helper()
	ctx, cancel := deadline(waitDeadline + time.Minute)
	defer cancel()
	m.failf(m.checks().CheckSSH(ctx), "SSH as root")
}

// WaitForPreNixos runs every pre-nixos check in order (storage provisioned, the LAN
// address announced, SSH as root) once per guest, so the tests on a shared machine
// each assert the one result, and returns what they found (the storage-status, the
// address, the SSH user).
func (m *Machine) WaitForPreNixos() *verify.PreNixos {
	m.t.Helper()
	p := m.checks()
	m.pre.once.Do(func() {
		ctx, cancel := deadline(storageDeadline + 2*waitDeadline)
		defer cancel()
		m.pre.err = p.Run(ctx)
	})
	m.failf(m.pre.err, "pre-nixos's checks (storage, LAN, SSH)")
	return p
}

// StorageFails waits up to within for storage-status, which must not come as promised,
// and returns why (the diagnostics and captures that explain it are in the run).
func (m *Machine) StorageFails(within time.Duration) string {
	m.t.Helper()
	p := m.checks()
	p.StorageTimeout = Scaled(within)
	return m.mustFail(p.CheckStorage, "pre-nixos's storage check")
}

// LANFails waits up to within for the LAN, which must not come, and returns why.
func (m *Machine) LANFails(within time.Duration) string {
	m.t.Helper()
	p := m.checks()
	p.NetworkTimeout = Scaled(within)
	return m.mustFail(p.CheckNetwork, "the LAN check")
}

// SSHFails tries SSH as root for up to within, which must be refused, and returns why.
func (m *Machine) SSHFails(within time.Duration) string {
	m.t.Helper()
	p := m.checks()
	p.SSHTimeout = Scaled(within)
	return m.mustFail(p.CheckSSH, "SSH as root")
}

// mustFail runs a check (bounded by its own timeout) that must fail and returns why.
func (m *Machine) mustFail(check func(context.Context) error, what string) string {
	m.t.Helper()
	err := check(context.Background())
	require.Error(m.t, err, "%s must fail (run directory %s)", what, m.Dir())
	return err.Error()
}

// Status reads a KEY=VALUE status file of pre-nixos's (storage-status, network-status).
func (m *Machine) Status(path string) map[string]string {
	m.t.Helper()
	ctx, cancel := deadline(commandDeadline)
	defer cancel()
	st, err := m.checks().ReadStatus(ctx, path)
	m.failf(err, "reading %s", path)
	return st
}

// HostKey is the guest's SSH host key line as the console shows it.
func (m *Machine) HostKey() string {
	m.t.Helper()
	ctx, cancel := deadline(commandDeadline)
	defer cancel()
	line, err := m.checks().HostKey(ctx)
	m.failf(err, "reading the guest's host key")
	return line
}

// RequireEvidence checks a failed check left a diagnostic and captures mentioning what.
func (m *Machine) RequireEvidence(what string) {
	m.t.Helper()
	diags, _ := filepath.Glob(filepath.Join(m.Dir(), "diagnostics", "*.txt"))
	require.NotEmpty(m.t, diags, "a diagnostics file explains the failure (run directory %s)", m.Dir())
	idx, err := os.ReadFile(filepath.Join(m.Dir(), "captures", "index.md"))
	require.NoError(m.t, err, "captures were taken")
	require.Contains(m.t, string(idx), what)
}
