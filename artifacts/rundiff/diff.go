package rundiff

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bootlab/bootlab/artifacts/atomicfile"
	"github.com/bootlab/bootlab/artifacts/runrec"
)

// DiffFile is the diff against the last passing run that Close writes into a run
// directory for report.html.
const DiffFile = "diff.json"

// Evidence capture names (files are <name>.txt in EvidenceDir); harness/capture writes
// them under the same names.
const (
	capKernel   = "kernel-version"
	capCmdline  = "kernel-cmdline"
	capJournalW = "journal-warnings"
	capUnits    = "systemctl-list-units"
	capFailed   = "systemctl-failed"
	capBlame    = "systemd-analyze-blame"
	capPlan     = "pre-nixos-plan"
	capPNFiles  = "pre-nixos-files"
)

// Options tune what counts as a difference rather than boot-to-boot noise. Zero
// values take the defaults, which were chosen from repeated clean fixture boots under
// TCG on a loaded two-core machine (docs/debugging.md).
type Options struct {
	// A milestone phase "moved" when it changed by at least MilestoneAbs and by a
	// factor of at least MilestoneRatio (default 30 s and 3: on a loaded machine two
	// clean TCG fixture boots differed by 2.1x in one phase, 71 s against 34 s; the
	// trend chart is for smaller drifts).
	MilestoneAbs   time.Duration
	MilestoneRatio float64
	// A unit "got slower" in systemd-analyze blame by at least BlameAbs and by a
	// factor of at least BlameRatio (default 10 s and 3).
	BlameAbs   time.Duration
	BlameRatio float64
}

func (o *Options) defaults() {
	if o.MilestoneAbs <= 0 {
		o.MilestoneAbs = 30 * time.Second
	}
	if o.MilestoneRatio <= 1 {
		o.MilestoneRatio = 3
	}
	if o.BlameAbs <= 0 {
		o.BlameAbs = 10 * time.Second
	}
	if o.BlameRatio <= 1 {
		o.BlameRatio = 3
	}
}

// RunInfo names one side of a diff.
type RunInfo struct {
	Dir     string         `json:"dir"`
	Slug    string         `json:"slug"`
	Outcome runrec.Outcome `json:"outcome"`
	Started time.Time      `json:"started"`
	Image   string         `json:"image,omitempty"`
	// Evidence is false when the run has no captures/boot (an older run, or one taken
	// with --captures none): only milestones can be compared then.
	Evidence bool `json:"evidence"`
}

// Change is a value that differs.
type Change struct {
	A string `json:"a"`
	B string `json:"b"`
}

// MilestoneDelta is a milestone whose phase moved, or that only one run reached.
// Times are seconds; a nil side did not reach it.
type MilestoneDelta struct {
	Name string `json:"name"`
	// AtA/AtB: offset from the run's start. PhaseA/PhaseB: the phase ending there.
	AtA    *float64 `json:"at_a,omitempty"`
	AtB    *float64 `json:"at_b,omitempty"`
	PhaseA *float64 `json:"phase_a,omitempty"`
	PhaseB *float64 `json:"phase_b,omitempty"`
}

// Slower is a unit that took longer to start (systemd-analyze blame).
type Slower struct {
	Unit string  `json:"unit"`
	A    float64 `json:"a_seconds"`
	B    float64 `json:"b_seconds"`
}

// Units is what changed among systemd units.
type Units struct {
	Failed    []string `json:"failed,omitempty"`    // failed in B, not in A
	Recovered []string `json:"recovered,omitempty"` // failed in A, not in B
	Appeared  []string `json:"appeared,omitempty"`
	Vanished  []string `json:"vanished,omitempty"`
	Slower    []Slower `json:"slower,omitempty"`
}

func (u Units) empty() bool {
	return len(u.Failed)+len(u.Recovered)+len(u.Appeared)+len(u.Vanished)+len(u.Slower) == 0
}

// JournalLine is a warning-or-worse message new in B: the normalised form that was
// compared and the first original line it stands for.
type JournalLine struct {
	Normalised string `json:"normalised"`
	Example    string `json:"example"`
	Count      int    `json:"count"`
}

// Captures says which evidence files differ after normalisation.
type Captures struct {
	Changed []string `json:"changed,omitempty"`
	OnlyA   []string `json:"only_a,omitempty"`
	OnlyB   []string `json:"only_b,omitempty"`
}

// Diff is what differs from run A to run B.
type Diff struct {
	A          RunInfo          `json:"a"`
	B          RunInfo          `json:"b"`
	Outcome    *Change          `json:"outcome,omitempty"`
	Milestones []MilestoneDelta `json:"milestones,omitempty"`
	Units      Units            `json:"units"`
	Journal    []JournalLine    `json:"journal,omitempty"`
	Kernel     *Change          `json:"kernel,omitempty"`
	Cmdline    *Change          `json:"cmdline,omitempty"`
	// PreNixosPlan and PreNixosStatus are line diffs ("- " only in A, "+ " only in B).
	PreNixosPlan   []string `json:"pre_nixos_plan,omitempty"`
	PreNixosStatus []string `json:"pre_nixos_status,omitempty"`
	Captures       Captures `json:"captures"`
	// Predicate is the judgement of two probe runs (bisect), step by step: what
	// decided the bisection comes before the boot evidence.
	Predicate *Predicate `json:"predicate,omitempty"`
	// Notes say what could not be compared.
	Notes []string `json:"notes,omitempty"`
}

// Predicate compares two runs' predicate verdicts (runrec.Verdict) step by step.
type Predicate struct {
	A *runrec.Verdict `json:"a,omitempty"`
	B *runrec.Verdict `json:"b,omitempty"`
	// Steps pairs the steps by position (the same predicate ran on both).
	Steps []PredicateStep `json:"steps,omitempty"`
}

// PredicateStep is one step of the predicate in both runs; a nil side did not have it.
type PredicateStep struct {
	Step    string                `json:"step"`
	A       *runrec.PredicateStep `json:"a,omitempty"`
	B       *runrec.PredicateStep `json:"b,omitempty"`
	Differs bool                  `json:"differs"`
}

// Differs reports whether the verdicts or any step's result or output differ.
func (p *Predicate) Differs() bool {
	if p == nil {
		return false
	}
	if verdictOf(p.A) != verdictOf(p.B) {
		return true
	}
	for _, s := range p.Steps {
		if s.Differs {
			return true
		}
	}
	return false
}

func verdictOf(v *runrec.Verdict) string {
	if v == nil {
		return "(none)"
	}
	return v.Verdict
}

func comparePredicates(a, b *runrec.Verdict) *Predicate {
	if a == nil && b == nil {
		return nil
	}
	p := &Predicate{A: a, B: b}
	var sa, sb []runrec.PredicateStep
	if a != nil {
		sa = a.Steps
	}
	if b != nil {
		sb = b.Steps
	}
	for i := 0; i < len(sa) || i < len(sb); i++ {
		var ps PredicateStep
		if i < len(sa) {
			ps.A = &sa[i]
			ps.Step = sa[i].Step
		}
		if i < len(sb) {
			ps.B = &sb[i]
			if ps.Step == "" {
				ps.Step = sb[i].Step
			}
		}
		ps.Differs = ps.A == nil || ps.B == nil || ps.A.Result != ps.B.Result || ps.A.Output != ps.B.Output ||
			exitOf(ps.A) != exitOf(ps.B) || ps.A.Step != ps.B.Step
		p.Steps = append(p.Steps, ps)
	}
	return p
}

func exitOf(s *runrec.PredicateStep) int {
	if s == nil || s.ExitStatus == nil {
		return -1
	}
	return *s.ExitStatus
}

// Empty reports whether nothing differs (notes do not count): a predicate verdict that
// differs is a difference even when the boots are alike.
func (d *Diff) Empty() bool {
	return d.Outcome == nil && !d.Predicate.Differs() && d.bootEmpty()
}

// bootEmpty reports whether the boot evidence (milestones, units, journal, kernel,
// captures) is the same in both runs.
func (d *Diff) bootEmpty() bool {
	return len(d.Milestones) == 0 && d.Units.empty() && len(d.Journal) == 0 &&
		d.Kernel == nil && d.Cmdline == nil && len(d.PreNixosPlan) == 0 && len(d.PreNixosStatus) == 0 &&
		len(d.Captures.Changed)+len(d.Captures.OnlyA)+len(d.Captures.OnlyB) == 0
}

// Run is a loaded run directory.
type Run struct {
	Info     RunInfo
	Meta     runrec.Metadata
	Captures map[string]string // evidence capture name -> content
}

// Load reads a run directory's metadata and evidence captures.
func Load(dir string) (*Run, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("run directory %q: %w", dir, err)
	}
	m, err := runrec.ReadMetadata(abs)
	if err != nil {
		return nil, fmt.Errorf("loading run %s: %w", dir, err)
	}
	r := &Run{Meta: m, Captures: map[string]string{},
		Info: RunInfo{Dir: abs, Slug: m.Slug, Outcome: m.Outcome, Started: m.Started, Image: m.Image.Path}}
	evDir := filepath.Join(abs, filepath.FromSlash(EvidenceDir))
	idx, err := ReadCaptureIndex(evDir)
	if err != nil {
		return nil, fmt.Errorf("loading run %s: %w", dir, err)
	}
	for _, c := range idx.Captures {
		if c.File == "" || c.Skipped || c.Status < 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(evDir, c.File))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("loading run %s: %w", dir, err)
		}
		r.Captures[c.Name] = string(b)
	}
	r.Info.Evidence = len(r.Captures) > 0
	return r, nil
}

// CompareDirs loads two run directories and compares them.
func CompareDirs(a, b string, o Options) (*Diff, error) {
	ra, err := Load(a)
	if err != nil {
		return nil, err
	}
	rb, err := Load(b)
	if err != nil {
		return nil, err
	}
	return Compare(ra, rb, o), nil
}

// Compare says what differs from a to b.
func Compare(a, b *Run, o Options) *Diff {
	o.defaults()
	d := &Diff{A: a.Info, B: b.Info}
	if a.Meta.Outcome != b.Meta.Outcome {
		d.Outcome = &Change{A: string(a.Meta.Outcome), B: string(b.Meta.Outcome)}
	}
	d.Predicate = comparePredicates(a.Meta.Verdict, b.Meta.Verdict)
	d.Milestones = milestones(a.Meta, b.Meta, o)
	if !a.Info.Evidence || !b.Info.Evidence {
		for _, r := range []*Run{a, b} {
			if !r.Info.Evidence {
				d.Notes = append(d.Notes, fmt.Sprintf("%s has no boot evidence (captures/boot): only milestones and outcome compared", r.Info.Dir))
			}
		}
		return d
	}
	d.Units = units(a.Captures, b.Captures, o)
	d.Journal = journal(a.Captures[capJournalW], b.Captures[capJournalW])
	d.Kernel = change(a.Captures, b.Captures, capKernel)
	d.Cmdline = change(a.Captures, b.Captures, capCmdline)
	d.PreNixosPlan = lineDiff(a.Captures[capPlan], b.Captures[capPlan])
	d.PreNixosStatus = lineDiff(a.Captures[capPNFiles], b.Captures[capPNFiles])
	d.Captures = captures(a.Captures, b.Captures)
	return d
}

// --- milestones ---

// noiseMilestones are phases whose length is the harness's own doing, not the guest's.
var noiseMilestones = map[string]bool{"captures": true, "shutdown": true}

func milestones(a, b runrec.Metadata, o Options) []MilestoneDelta {
	var out []MilestoneDelta
	seen := map[string]bool{}
	names := []string{}
	for _, ms := range append(append([]runrec.Milestone(nil), a.Milestones...), b.Milestones...) {
		if !seen[ms.Name] {
			seen[ms.Name] = true
			names = append(names, ms.Name)
		}
	}
	for _, n := range names {
		if noiseMilestones[n] || strings.HasPrefix(n, "shutdown:") {
			continue // the shutdown's stages are the harness's stop plan, not the guest's boot
		}
		ma, okA := a.Milestone(n)
		mb, okB := b.Milestone(n)
		md := MilestoneDelta{Name: n}
		if okA {
			md.AtA, md.PhaseA = secs(ma.At.D()), secs(ma.Duration.D())
		}
		if okB {
			md.AtB, md.PhaseB = secs(mb.At.D()), secs(mb.Duration.D())
		}
		if okA && okB && !moved(ma.Duration.D(), mb.Duration.D(), o.MilestoneAbs, o.MilestoneRatio) {
			continue
		}
		// A run that did not get as far (failed early) lacks the later milestones; the
		// outcome change already says so, but which ones is the useful part.
		out = append(out, md)
	}
	return out
}

func secs(d time.Duration) *float64 {
	v := math.Round(d.Seconds()*1000) / 1000
	return &v
}

// moved reports a change of at least abs and by at least ratio in either direction.
func moved(a, b, abs time.Duration, ratio float64) bool {
	diff := b - a
	if diff < 0 {
		diff = -diff
	}
	if diff < abs {
		return false
	}
	lo, hi := math.Min(float64(a), float64(b)), math.Max(float64(a), float64(b))
	return lo <= 0 || hi/lo >= ratio
}

// --- units ---

type unitRow struct{ load, active, sub string }

// parseUnits reads `systemctl list-units --all --plain --no-legend`: UNIT LOAD ACTIVE
// SUB DESCRIPTION, with a leading "●" on units in a bad state in some versions.
func parseUnits(s string) map[string]unitRow {
	out := map[string]unitRow{}
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "●")))
		if len(f) < 4 || strings.Contains(f[0], " ") {
			continue
		}
		out[unitName(f[0])] = unitRow{load: f[1], active: f[2], sub: f[3]}
	}
	return out
}

// unitName normalises the parts of a unit name that change every boot: device units
// named after random file-system UUIDs, transient run-* and session-N scopes.
func unitName(u string) string { return NormaliseText(u) }

// transientUnit is true for units that come and go with the harness's own activity
// (its login session, systemd-run helpers), not with the image.
func transientUnit(u string) bool {
	return strings.HasSuffix(u, ".scope") || strings.HasPrefix(u, "run-")
}

func units(a, b map[string]string, o Options) Units {
	var u Units
	ua, ub := parseUnits(a[capUnits]), parseUnits(b[capUnits])
	fa, fb := failedSet(a[capFailed], ua), failedSet(b[capFailed], ub)
	for n := range fb {
		if !fa[n] {
			u.Failed = append(u.Failed, n)
		}
	}
	for n := range fa {
		if !fb[n] {
			u.Recovered = append(u.Recovered, n)
		}
	}
	if a[capUnits] != "" && b[capUnits] != "" {
		for n := range ub {
			if _, ok := ua[n]; !ok && !transientUnit(n) {
				u.Appeared = append(u.Appeared, n)
			}
		}
		for n := range ua {
			if _, ok := ub[n]; !ok && !transientUnit(n) {
				u.Vanished = append(u.Vanished, n)
			}
		}
	}
	ba, bb := ParseBlame(a[capBlame]), ParseBlame(b[capBlame])
	for n, tb := range bb {
		ta, ok := ba[n]
		if ok && tb > ta && moved(ta, tb, o.BlameAbs, o.BlameRatio) {
			u.Slower = append(u.Slower, Slower{Unit: n, A: ta.Seconds(), B: tb.Seconds()})
		}
	}
	sort.Strings(u.Failed)
	sort.Strings(u.Recovered)
	sort.Strings(u.Appeared)
	sort.Strings(u.Vanished)
	sort.Slice(u.Slower, func(i, j int) bool { return u.Slower[i].Unit < u.Slower[j].Unit })
	return u
}

// failedSet is the failed units: from the --failed capture, and any unit whose ACTIVE
// column says failed in the full list (either capture alone is enough).
func failedSet(failed string, all map[string]unitRow) map[string]bool {
	out := map[string]bool{}
	for n, r := range parseUnits(failed) {
		if r.active == "failed" {
			out[n] = true
		}
	}
	for n, r := range all {
		if r.active == "failed" {
			out[n] = true
		}
	}
	return out
}

var reBlame = regexp.MustCompile(`^\s*((?:\d+(?:\.\d+)?(?:h|min|s|ms|us|µs)\s*)+)\s+(\S+)\s*$`)
var reBlamePart = regexp.MustCompile(`(\d+(?:\.\d+)?)(h|min|s|ms|us|µs)`)

// ParseBlame reads `systemd-analyze blame`: "1min 2.345s unit.service" per line.
func ParseBlame(s string) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, l := range strings.Split(s, "\n") {
		m := reBlame.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		var d time.Duration
		for _, p := range reBlamePart.FindAllStringSubmatch(m[1], -1) {
			v, _ := strconv.ParseFloat(p[1], 64)
			unit := map[string]time.Duration{"h": time.Hour, "min": time.Minute, "s": time.Second, "ms": time.Millisecond, "us": time.Microsecond, "µs": time.Microsecond}[p[2]]
			d += time.Duration(v * float64(unit))
		}
		out[unitName(m[2])] = d
	}
	return out
}

// --- journal ---

// hostStarved are kernel warnings that say the host did not run the guest's CPU for a
// while (TCG on a loaded machine): they come and go with the host's load, not with the
// image, so a diff of two boots ignores them (a soft lockup is still reported). The TSC
// lines: the kernel times the TSC against the PIT at boot and watches it later; a
// vCPU the host did not run for a while fails both (seen on fixture boots two at a
// time on two cores, and in CI, where one run of a clean pair had "tsc: Unable to
// calibrate against PIT" and the other did not).
var hostStarved = regexp.MustCompile(`clocksource: Long readout interval|hrtimer: interrupt took|hpet: Lost \S+ RTC interrupts|` +
	`tsc: Unable to calibrate against PIT|tsc: Fast TSC calibration failed|tsc: Marking TSC unstable|clocksource: timekeeping watchdog|Marking clocksource '\S+' as unstable`)

// journalNoise are lines that only say where a journal starts or that it is empty, and
// the host-starvation warnings.
func journalNoise(l string) bool {
	t := strings.TrimSpace(l)
	return t == "" || strings.HasPrefix(t, "-- ") || strings.HasPrefix(t, "Hint: ") || hostStarved.MatchString(t)
}

func journal(a, b string) []JournalLine {
	have := map[string]bool{}
	for _, l := range strings.Split(a, "\n") {
		if !journalNoise(l) {
			have[NormaliseJournalLine(l)] = true
		}
	}
	var out []JournalLine
	idx := map[string]int{}
	for _, l := range strings.Split(b, "\n") {
		if journalNoise(l) {
			continue
		}
		n := NormaliseJournalLine(l)
		if have[n] {
			continue
		}
		if i, ok := idx[n]; ok {
			out[i].Count++
			continue
		}
		idx[n] = len(out)
		out = append(out, JournalLine{Normalised: n, Example: strings.TrimSpace(l), Count: 1})
	}
	return out
}

// --- kernel, pre-nixos, captures ---

func change(a, b map[string]string, name string) *Change {
	va, vb := strings.TrimSpace(a[name]), strings.TrimSpace(b[name])
	if va == vb {
		return nil
	}
	return &Change{A: va, B: vb}
}

// lineDiff lists normalised lines only in a ("- ") and only in b ("+ "), in order. Plans
// and status files are short; which lines changed is what a person needs.
func lineDiff(a, b string) []string {
	la, lb := normLines(a), normLines(b)
	inA, inB := map[string]int{}, map[string]int{}
	for _, l := range la {
		inA[l]++
	}
	for _, l := range lb {
		inB[l]++
	}
	var out []string
	for _, l := range la {
		if inB[l] == 0 {
			out = append(out, "- "+l)
		}
	}
	for _, l := range lb {
		if inA[l] == 0 {
			out = append(out, "+ "+l)
		}
	}
	return out
}

func normLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if l := NormaliseText(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// volatileCaptures are compared by their structured diffs above (or not at all): as
// plain text they differ on every boot (message order, timings, lifetimes).
var volatileCaptures = map[string]bool{
	"journal": true, capJournalW: true, "dmesg": true, capBlame: true, "systemd-analyze-critical-chain": true,
}

// reVolatileJSON strips values that tick without anything changing: address lifetimes
// in ip -j, file-system usage in lsblk -O (logs are written while the guest runs).
var reVolatileJSON = regexp.MustCompile(`"(valid_life_time|preferred_life_time|fsavail|fsused|fsuse%)":\s*("[^"]*"|null|\d+)`)

// reSLAACObject is one address object of ip -j that the kernel or networkd configured
// from a router advertisement ("dynamic"), and reSLAACFlag the flags that say which of
// the two did: networkd takes the link over from the kernel's own autoconfiguration
// partway through the boot, so whichever saw QEMU's advertisement first configures the
// same address, with "noprefixroute" and "mngtmpaddr" or without (seen: two clean boots
// of one image, captured at the same step, differed in nothing else).
var (
	reSLAACObject = regexp.MustCompile(`\{[^{}]*"dynamic":\s*true[^{}]*\}`)
	reSLAACFlag   = regexp.MustCompile(`"(noprefixroute|mngtmpaddr)":\s*true,?\s*`)
)

// stableCapture is a capture without the values that differ between two boots of the
// same image with nothing changed.
func stableCapture(s string) string {
	s = reVolatileJSON.ReplaceAllString(s, `"$1":N`)
	return reSLAACObject.ReplaceAllStringFunc(s, func(obj string) string { return reSLAACFlag.ReplaceAllString(obj, "") })
}

func captures(a, b map[string]string) Captures {
	var c Captures
	for n, va := range a {
		vb, ok := b[n]
		switch {
		case !ok:
			c.OnlyA = append(c.OnlyA, n)
		case volatileCaptures[n]:
		case !sameLines(va, vb):
			c.Changed = append(c.Changed, n)
		}
	}
	for n := range b {
		if _, ok := a[n]; !ok {
			c.OnlyB = append(c.OnlyB, n)
		}
	}
	sort.Strings(c.Changed)
	sort.Strings(c.OnlyA)
	sort.Strings(c.OnlyB)
	return c
}

// sameLines compares two captures as sets of normalised lines: order within a capture
// (units listed by hash order, interfaces by discovery) is not a change.
func sameLines(a, b string) bool {
	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range normLines(stableCapture(s)) {
			m[l] = true
		}
		return m
	}
	sa, sb := set(a), set(b)
	if len(sa) != len(sb) {
		return false
	}
	for l := range sa {
		if !sb[l] {
			return false
		}
	}
	return true
}

// WriteJSONFile writes the diff as indented JSON, atomically.
func (d *Diff) WriteJSONFile(path string) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding run diff: %w", err)
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

// ReadJSONFile reads a diff written by WriteJSONFile.
func ReadJSONFile(path string) (*Diff, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading run diff: %w", err)
	}
	var d Diff
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return &d, nil
}
