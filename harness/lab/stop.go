package lab

import (
	"time"

	"github.com/bootlab/bootlab/artifacts/runrec"
)

// quickStopReason says why nothing on the guest of cfg needs a clean shutdown, or ""
// when something does: a disk the run keeps (KeepDisks) or one it did not create (a
// Path: existing storage, a disk the user passed). A guest with only read-only media
// and scratch disks the run deletes loses nothing to a sync and quit, and a guest that
// would not power itself off (a shell loop as PID 1, no ACPI handling) then costs no
// wait at all.
func quickStopReason(cfg Options) string {
	created := 0
	for _, d := range cfg.VM.Disks {
		if d.Path != "" {
			return ""
		}
		created++
	}
	switch {
	case created == 0:
		return "no disks (read-only media only)"
	case cfg.KeepDisks:
		return ""
	}
	return "only scratch disks, which the run deletes"
}

// SetVerdict tells the lab the run's verdict is in (a bisect probe's predicate has
// judged it): nothing the guest does any more can change it, so unless a disk is kept
// the stop syncs and quits instead of waiting for a guest that may never power off.
func (l *Lab) SetVerdict(v runrec.Verdict) error {
	if quickStopReason(l.cfg) != "" {
		l.vm.SetQuickStop("the verdict is in (" + string(v.Verdict) + ")")
	}
	return l.rec.SetVerdict(v)
}

// recordStop puts the stop into the run record: the whole shutdown as one span and each
// stage (how long, why it ended) as its own, so the report's timeline says where a slow
// stop went. The stages are in harness.log too (qemu.stop_stage).
func (l *Lab) recordStop(start time.Time) {
	l.mu.Lock()
	done := l.stopRecorded
	l.stopRecorded = true
	l.mu.Unlock()
	if done {
		return
	}
	end := time.Now()
	rep := l.vm.StopReport()
	for _, st := range rep.Stages {
		_ = l.rec.SpanNote("shutdown:"+string(st.Stage), st.Start, st.Start.Add(st.Took), st.Ended)
	}
	note := ""
	if rep.Stage != "" {
		note = "ended by " + string(rep.Stage)
	}
	_ = l.rec.SpanNote(runrec.MilestoneShutdown, start, end, note)
}
