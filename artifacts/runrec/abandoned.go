package runrec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Abandoned is the outcome of a run whose bootlab process died (SIGKILL, OOM, a host
// crash) while metadata.json still said running: there is no verdict, so the ledger,
// reports and the trend count it as neither pass nor fail.
const Abandoned Outcome = "abandoned"

// Owner identifies the process that created a run. A pid alone is not enough: pids are
// reused, so the process start time (clock ticks since boot, /proc/<pid>/stat field 22)
// and the boot id pin the exact process; a different boot means it is gone.
type Owner struct {
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	BootID     string `json:"boot_id,omitempty"`
	Hostname   string `json:"hostname,omitempty"`
}

// currentOwner describes this process.
func currentOwner() *Owner {
	o := &Owner{PID: os.Getpid(), BootID: bootID()}
	o.StartTicks, _ = processStart(o.PID)
	o.Hostname, _ = os.Hostname()
	return o
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// processStart reads the start time of pid in clock ticks since boot.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces or ')': the
	// fields after it start at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field 22 (starttime) is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// OwnerGone says whether the process that wrote a running metadata.json no longer
// exists, and why. It answers false when it cannot know: no owner recorded (a run
// from an older bootlab), or a run created on another host (a shared notes directory).
func (m *Metadata) OwnerGone() (bool, string) {
	if m.Outcome != Running || m.Owner == nil || m.Owner.PID <= 0 {
		return false, ""
	}
	o := m.Owner
	if host, _ := os.Hostname(); o.Hostname != "" && host != o.Hostname {
		return false, ""
	}
	if id := bootID(); o.BootID != "" && id != "" && id != o.BootID {
		return true, fmt.Sprintf("the machine rebooted since bootlab process %d started the run", o.PID)
	}
	start, err := processStart(o.PID)
	if err != nil {
		return true, fmt.Sprintf("bootlab process %d is gone", o.PID)
	}
	if start != o.StartTicks {
		return true, fmt.Sprintf("bootlab process %d is gone (pid %d now belongs to another process)", o.PID, o.PID)
	}
	return false, ""
}

// Settle reads dir's metadata and, when it says running but its process is gone,
// marks the run abandoned (with the time it was found and why) and, when the notes
// directory holding dir has a ledger, appends the run to it as abandoned. Every
// command that reads run directories goes through here (or SettleAll), so a killed run
// stops looking like one in progress at the first look. Concurrent settlers are
// serialised by a lock on the run directory, so a run is marked and entered in the
// ledger once.
func Settle(dir string) (Metadata, error) {
	m, err := ReadMetadata(dir)
	if err != nil {
		return m, err
	}
	if gone, _ := m.OwnerGone(); !gone {
		return m, nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return m, fmt.Errorf("settling run %s: %w", dir, err)
	}
	defer d.Close()
	if err := flock(d, unix.LOCK_EX); err != nil {
		return m, fmt.Errorf("settling run %s: locking: %w", dir, err)
	}
	defer func() { _ = flock(d, unix.LOCK_UN) }()
	r, err := Open(dir) // again, under the lock: another settler may have been first
	if err != nil {
		return m, err
	}
	m = r.Metadata()
	gone, why := m.OwnerGone()
	if !gone {
		return m, nil
	}
	now := time.Now().UTC()
	if err := r.Update(func(m *Metadata) {
		m.Outcome = Abandoned
		m.Error = fmt.Sprintf("abandoned: %s without recording a verdict (found %s)", why, now.Format(time.RFC3339))
	}); err != nil {
		return m, fmt.Errorf("marking run %s abandoned: %w", dir, err)
	}
	m = r.Metadata()
	ledger := DefaultLedger(filepath.Dir(r.Dir))
	if _, err := os.Stat(ledger); err == nil {
		if err := AppendLedger(ledger, r.LedgerEntry()); err != nil {
			return m, fmt.Errorf("marking run %s abandoned: %w", dir, err)
		}
	}
	return m, nil
}

// SettleAll settles every run directory directly under notesRoot and returns the ones
// it marked abandoned. A missing notes directory has none.
func SettleAll(notesRoot string) (marked []string, err error) {
	ents, err := os.ReadDir(notesRoot)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading notes directory: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(notesRoot, e.Name())
		before, err := ReadMetadata(dir)
		if err != nil || before.Outcome != Running {
			continue // not a run directory, or settled
		}
		m, err := Settle(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if m.Outcome == Abandoned {
			marked = append(marked, dir)
		}
	}
	return marked, errors.Join(errs...)
}
