package inject

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bootlab/bootlab/harness/shell"
	"github.com/bootlab/bootlab/provisioner/inventory"
	"github.com/bootlab/bootlab/provisioner/planner"
)

// fakeGuest answers Inject's commands the way a baseline would.
type fakeGuest struct {
	uploaded map[string][]byte
	planOut  string
	planExit int
	log      string
	sysBlock string
	ran      []string
}

func (g *fakeGuest) Upload(_ context.Context, data []byte, path string) (string, error) {
	if g.uploaded == nil {
		g.uploaded = map[string][]byte{}
	}
	g.uploaded[path] = data
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:]), nil
}

func (g *fakeGuest) Run(_ context.Context, cmd string, _ ...shell.RunOption) (shell.Result, error) {
	g.ran = append(g.ran, cmd)
	switch {
	case strings.Contains(cmd, "--plan-only"):
		return shell.Result{Output: []byte(g.planOut), ExitStatus: g.planExit}, nil
	case strings.HasPrefix(cmd, "cat "):
		return shell.Result{Output: []byte(g.log)}, nil
	case cmd == sysBlockCmd:
		return shell.Result{Output: []byte(g.sysBlock)}, nil
	}
	return shell.Result{}, errors.New("unexpected command " + cmd)
}

// Two disks as the installer shows them: vda 2100 MiB, vdb 2400 MiB, both rotational;
// plus the kind of devices a plan never uses.
const installerSysBlock = `loop0 0 0 0 0
ram0 8192 1 0 0
vda 4300800 1 0 0
vdb 4915200 1 0 0
sr0 2097151 1 1 0
`

func installerDisks() []inventory.Disk {
	return []inventory.Disk{{Name: "vda", Size: 4300800 * 512, Rotational: true}, {Name: "vdb", Size: 4915200 * 512, Rotational: true}}
}

func planFor(t *testing.T, disks []inventory.Disk) string {
	t.Helper()
	p, _, err := planner.Compute(disks, planner.Options{RAMGiB: 1})
	require.NoError(t, err)
	b, err := p.JSON()
	require.NoError(t, err)
	return string(b)
}

func scannedLine(t *testing.T, disks []inventory.Disk) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(`{"level":"INFO","event":"pre_nixos.inventory.scanned","disks":[`)
	for i, d := range disks {
		if i > 0 {
			b.WriteString(",")
		}
		rot := "false"
		if d.Rotational {
			rot = "true"
		}
		b.WriteString(`{"name":"` + d.Name + `","size":` + strconv.FormatInt(d.Size, 10) + `,"rotational":` + rot + `}`)
	}
	b.WriteString(`],"excluded":[],"ram_gib":1}` + "\n")
	return b.String()
}

const findmntMissing = `{"level":"WARN","event":"pre_nixos.command.failed","command":"findmnt -n -o SOURCE /iso","returncode":127,"error":"findmnt: executable not found"}
`

// The plan path the installer takes: pre-nixos plans from /sys, findmnt (the boot
// medium probe) is missing and named, and the plan is the plan of the guest's facts.
func TestInjectPlansAndNamesMissingTools(t *testing.T) {
	dir := t.TempDir()
	g := &fakeGuest{planOut: planFor(t, installerDisks()), log: findmntMissing + scannedLine(t, installerDisks()), sysBlock: installerSysBlock}
	bin := []byte("\x7fELF pre-nixos")
	res, err := Inject(context.Background(), g, Options{Binary: bin, Dir: dir})
	require.NoError(t, err)
	require.Equal(t, bin, g.uploaded[DefaultPath])
	require.Equal(t, []string{"findmnt"}, res.Missing)
	require.Equal(t, installerDisks(), res.Inventory)
	require.Equal(t, 1, res.RAMGiB)
	for _, f := range []string{PlanFile, LogFile, SHA256File, MissingFile} {
		require.FileExists(t, filepath.Join(dir, f))
	}
	missing, _ := os.ReadFile(filepath.Join(dir, MissingFile))
	require.Equal(t, "findmnt\n", string(missing))

	facts, err := ReadSysBlock(context.Background(), g)
	require.NoError(t, err)
	require.Len(t, Candidates(facts), 2, "loop, ram and removable sr0 are not candidates")
	require.NoError(t, Check(res, facts))
	disks, err := PlanDisks(res.Plan)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"vda", "vdb"}, disks)
}

// The other path: pre-nixos could not plan and its log names the commands the guest
// lacks. The run names them instead of handing on a plan or a bare exit status, and no
// plan file is left to be mistaken for one.
func TestInjectNamesMissingToolsInsteadOfPlanning(t *testing.T) {
	dir := t.TempDir()
	g := &fakeGuest{planExit: 1, log: findmntMissing +
		`{"level":"WARN","event":"pre_nixos.command.failed","command":"lsblk -dnpo NAME,TYPE,RM","returncode":127,"error":"lsblk: executable not found"}` + "\n" +
		"pre-nixos: storage detection failed: listing disks\n"}
	res, err := Inject(context.Background(), g, Options{Binary: []byte("x"), Dir: dir})
	var mt *MissingToolsError
	require.ErrorAs(t, err, &mt)
	require.Equal(t, []string{"findmnt", "lsblk"}, mt.Tools)
	require.ErrorContains(t, err, "the guest lacks findmnt, lsblk")
	require.Nil(t, res.Plan)
	require.NoFileExists(t, filepath.Join(dir, PlanFile))
	require.FileExists(t, filepath.Join(dir, MissingFile))

	// A failure with no tool missing is still an error, with the log's end, not a
	// MissingToolsError.
	g = &fakeGuest{planExit: 2, log: "pre-nixos: no usable disks\n"}
	_, err = Inject(context.Background(), g, Options{Binary: []byte("x")})
	require.ErrorContains(t, err, "exited 2")
	require.ErrorContains(t, err, "no usable disks")
	require.False(t, errors.As(err, &mt))
}

func TestInjectRefusesOutputThatIsNotAPlan(t *testing.T) {
	g := &fakeGuest{planOut: "pre-nixos: planned\n"}
	_, err := Inject(context.Background(), g, Options{Binary: []byte("x")})
	require.ErrorContains(t, err, "no JSON plan")
}

// A plan made from partial or misread facts does not pass the check.
func TestCheckCatchesPlansFromWrongFacts(t *testing.T) {
	facts, err := ParseSysBlock([]byte(installerSysBlock))
	require.NoError(t, err)
	good := installerDisks()
	cases := map[string]struct {
		inv  []inventory.Disk
		plan []inventory.Disk
		want string
	}{
		"a disk missed": {good[:1], good[:1], "vdb (2516582400 bytes, rotational true in /sys) is missing"},
		"size misread":  {[]inventory.Disk{good[0], {Name: "vdb", Size: 1 << 40, Rotational: true}}, good, "vdb: pre-nixos saw 1099511627776 bytes"},
		"flag misread":  {[]inventory.Disk{good[0], {Name: "vdb", Size: good[1].Size}}, good, "vdb: pre-nixos saw rotational false"},
		"extra disk":    {append(append([]inventory.Disk{}, good...), inventory.Disk{Name: "sr0", Size: 1 << 31}), good, "has sr0, which /sys does not offer"},
		"plan differs":  {good, []inventory.Disk{good[0], {Name: "vdb", Size: good[1].Size}}, "not the plan of the guest's /sys facts"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			res := &Result{Plan: []byte(planFor(t, c.plan)), Inventory: c.inv, RAMGiB: 1}
			require.ErrorContains(t, Check(res, facts), c.want)
		})
	}
	require.NoError(t, Check(&Result{Plan: []byte(planFor(t, good)), Inventory: good, RAMGiB: 1}, facts))
	require.ErrorContains(t, Check(&Result{}, facts), "no plan")
}

func TestParseSysBlockRefusesGarbage(t *testing.T) {
	_, err := ParseSysBlock([]byte("vda 100 1 0\n"))
	require.ErrorContains(t, err, "want NAME SIZE")
	_, err = ParseSysBlock([]byte("vda x 1 0 0\n"))
	require.ErrorContains(t, err, "unexpected size")
	_, err = ParseSysBlock([]byte("vda 100 2 0 0\n"))
	require.ErrorContains(t, err, "unexpected flag")
}

// The log lines are pre-nixos's own, from an injection into the mini image (busybox,
// no util-linux).
func TestMissingToolsFromPreNixosLog(t *testing.T) {
	log := []byte(`{"timestamp":"2026-12-02T05:44:36.517796348Z","level":"WARN","event":"pre_nixos.command.failed","command":"findmnt -n -o SOURCE /iso","returncode":127,"duration_ms":5,"error":"findmnt: executable not found"}
{"timestamp":"2026-12-02T05:44:36.771997187Z","level":"WARN","event":"pre_nixos.command.failed","command":"findmnt -n -o SOURCE /run/archiso/bootmnt","returncode":127,"duration_ms":0,"error":"findmnt: executable not found"}
{"level":"WARN","event":"pre_nixos.command.failed","command":"lsblk -dnpo NAME,TYPE,RM","returncode":127,"error":"lsblk: executable not found"}
{"level":"WARN","event":"pre_nixos.command.failed","command":"mdadm --examine /dev/vda","returncode":1,"error":"exit status 1"}
pre-nixos: leaving out vda: too small (64 MiB, need at least 2.0 GiB)
`)
	require.Equal(t, []string{"findmnt", "lsblk"}, MissingTools(log))
	require.Empty(t, MissingTools([]byte("pre-nixos: planned\n")))
}
