package runrec

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// SchemaVersion is bumped whenever a field changes meaning, so readers of old run
// directories (CI artefacts kept for months) can tell what they hold.
const SchemaVersion = 1

// Outcome of a run or a scenario.
type Outcome string

const (
	// Running is the outcome recorded until the run ends, so a metadata.json left by a
	// killed harness says the run never finished rather than claiming a verdict.
	Running     Outcome = "running"
	Pass        Outcome = "pass"
	Fail        Outcome = "fail"
	Error       Outcome = "error"
	Interrupted Outcome = "interrupted"
)

// Standard milestone names, in the order a boot reaches them (docs/run-records.md lists
// them under metadata.json). Others may be recorded freely.
const (
	MilestoneSpawn         = "spawn"
	MilestoneFirstOutput   = "first_output"
	MilestoneLoginPrompt   = "login_prompt"
	MilestoneRootShell     = "root_shell"
	MilestoneStorageStatus = "storage_status"
	MilestoneIPv4          = "ipv4"
	MilestoneSSH           = "ssh"
	MilestoneShutdown      = "shutdown"
)

// StandardMilestones in boot order; reports and trend charts use this order first.
var StandardMilestones = []string{
	MilestoneSpawn, MilestoneFirstOutput, MilestoneLoginPrompt, MilestoneRootShell,
	MilestoneStorageStatus, MilestoneIPv4, MilestoneSSH, MilestoneShutdown,
}

// Seconds is a duration written to JSON as seconds with millisecond precision: people
// and plotting scripts read metadata.json, and nanosecond integers serve neither.
type Seconds time.Duration

// D converts back to a time.Duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }

// MarshalJSON writes seconds, e.g. 12.345.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(s).Seconds(), 'f', 3, 64)), nil
}

// UnmarshalJSON reads seconds as a JSON number.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("duration in seconds: %w", err)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("duration in seconds: %v is not finite", f)
	}
	*s = Seconds(time.Duration(math.Round(f * float64(time.Second))))
	return nil
}

// Image is the provenance of the booted image.
type Image struct {
	Path string `json:"path"`
	// Kind is "iso" or "kernel" (a kernel plus initrd booted directly).
	Kind   string `json:"kind"`
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// For Kind "kernel": the initrd and command line next to Path (the kernel).
	Initrd       string `json:"initrd,omitempty"`
	InitrdSHA256 string `json:"initrd_sha256,omitempty"`
	// Append is the exact kernel command line when QEMU loaded the kernel.
	Append string `json:"append,omitempty"`
	// For Kind "iso": Boot is "firmware" (the ISO's own bootloader) or "direct" (the
	// menu entry Entry's Kernel and Initrd, extracted from the ISO, loaded by QEMU with
	// the ISO attached as a CD-ROM).
	Boot   string `json:"boot,omitempty"`
	Entry  string `json:"entry,omitempty"`
	Kernel string `json:"kernel,omitempty"`
	// Nix provenance, when the image came out of a Nix store.
	StorePath string `json:"store_path,omitempty"`
	Deriver   string `json:"deriver,omitempty"`
	NarHash   string `json:"nar_hash,omitempty"`
	// RootKeyFingerprint is the SSH SHA256 fingerprint of the root key embedded in the
	// image (never the key itself: the private half must not reach run records).
	RootKeyFingerprint string `json:"root_key_fingerprint,omitempty"`
	Profile            string `json:"profile,omitempty"`
}

// QEMU describes the emulator process.
type QEMU struct {
	Argv    []string `json:"argv,omitempty"`
	Version string   `json:"version,omitempty"`
	PID     int      `json:"pid,omitempty"`
	// ExitStatus as the harness saw it ("exit status 0", "signal: killed"), empty
	// while running.
	ExitStatus string `json:"exit_status,omitempty"`
}

// Accel is the accelerator used and why it was chosen.
type Accel struct {
	Name   string `json:"name,omitempty"` // kvm | tcg
	Reason string `json:"reason,omitempty"`
}

// Shell says how the harness reached root and where framed output travelled.
type Shell struct {
	UID        int    `json:"uid"`
	Escalation string `json:"escalation,omitempty"` // "sudo -i", "su -", or empty when the login shell was root
	Transport  string `json:"transport"`            // virtio-serial or console
	// ChannelStatus is "in use" or why the frame channel is not.
	ChannelStatus string `json:"channel_status,omitempty"`
}

// Milestone is a point reached during the run.
type Milestone struct {
	Name string `json:"name"`
	// At is the offset from Metadata.Started.
	At Seconds `json:"at"`
	// Duration is how long the phase ending at this milestone took: by default the
	// time since the previous milestone, which is what the timeline bar shows.
	Duration Seconds `json:"duration"`
	// Note says why a phase ended where that is not obvious (a shutdown stage:
	// "QEMU exited", "refused: the shell's prompt came back ...", "skipped: ...").
	Note string `json:"note,omitempty"`
}

// Scenario is one scenario's outcome, attributed to this run's VM only (the Python
// harness bootlab replaces blamed a healthy VM for a failure in an unrelated later test).
type Scenario struct {
	Name     string  `json:"name"`
	Outcome  Outcome `json:"outcome"`
	Error    string  `json:"error,omitempty"`
	Duration Seconds `json:"duration"`
}

// Artefact is one file in the run directory.
type Artefact struct {
	Path        string `json:"path"` // relative to the run directory, slash-separated
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	Description string `json:"description,omitempty"`
}

// Host describes the machine that ran the harness.
type Host struct {
	Hostname  string `json:"hostname,omitempty"`
	OS        string `json:"os,omitempty"`
	Arch      string `json:"arch,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	CPUs      int    `json:"cpus,omitempty"`
	GoVersion string `json:"go_version,omitempty"`
	CI        bool   `json:"ci,omitempty"`
}

// Metadata is metadata.json.
type Metadata struct {
	Schema         int         `json:"schema"`
	BootlabVersion string      `json:"bootlab_version,omitempty"`
	Slug           string      `json:"slug"`
	Started        time.Time   `json:"started"`
	Ended          *time.Time  `json:"ended,omitempty"`
	Outcome        Outcome     `json:"outcome"`
	Error          string      `json:"error,omitempty"`
	Image          Image       `json:"image"`
	QEMU           QEMU        `json:"qemu"`
	Accel          Accel       `json:"accel"`
	Shell          *Shell      `json:"shell,omitempty"`
	Milestones     []Milestone `json:"milestones"`
	Scenarios      []Scenario  `json:"scenarios"`
	Artefacts      []Artefact  `json:"artefacts"`
	// Verdict is a predicate's judgement of the run (a bisect probe), if any.
	Verdict *Verdict `json:"verdict,omitempty"`
	Host    Host     `json:"host"`
	// Owner is the process that created the run, so a later command can tell a run
	// in progress from one whose process was killed (see Settle).
	Owner *Owner `json:"owner,omitempty"`
}

// Milestone returns the named milestone, if reached.
func (m *Metadata) Milestone(name string) (Milestone, bool) {
	for _, ms := range m.Milestones {
		if ms.Name == name {
			return ms, true
		}
	}
	return Milestone{}, false
}

// clone deep-copies so callers can read a snapshot while the run goes on.
func (m *Metadata) clone() Metadata {
	c := *m
	if m.Ended != nil {
		e := *m.Ended
		c.Ended = &e
	}
	c.QEMU.Argv = append([]string(nil), m.QEMU.Argv...)
	if m.Owner != nil {
		o := *m.Owner
		c.Owner = &o
	}
	if m.Shell != nil {
		sh := *m.Shell
		c.Shell = &sh
	}
	if m.Verdict != nil {
		v := *m.Verdict
		v.Steps = append([]PredicateStep(nil), m.Verdict.Steps...)
		c.Verdict = &v
	}
	c.Milestones = append([]Milestone(nil), m.Milestones...)
	c.Scenarios = append([]Scenario(nil), m.Scenarios...)
	c.Artefacts = append([]Artefact(nil), m.Artefacts...)
	return c
}
