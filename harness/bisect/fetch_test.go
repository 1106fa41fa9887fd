package bisect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// isoServer serves /cNN.iso with distinct content on loopback and counts requests.
type isoServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newISOServer(t *testing.T) *isoServer {
	s := &isoServer{hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		fmt.Fprint(w, isoContent(r.URL.Path))
	}))
	t.Cleanup(s.Close)
	return s
}

func isoContent(path string) string { return "ISO image " + path }

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func urlCandidates(s *isoServer, n int) []Candidate {
	var cs []Candidate
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("/c%02d.iso", i)
		cs = append(cs, Candidate{Name: fmt.Sprintf("c%02d", i), URL: s.URL + p, SHA256: digest(isoContent(p)), Profile: "nixos"})
	}
	return cs
}

// A bisection over url= candidates downloads only the ISOs it probes, each once, and
// hands the prober a verified local ISO with the candidate's profile and entry kept.
func TestBisectDownloadsOnlyWhatItProbes(t *testing.T) {
	srv := newISOServer(t)
	fetchDir := t.TempDir()
	cands := urlCandidates(srv, 16)
	var mu sync.Mutex
	probed := map[string]bool{}
	p := ProberFunc(func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
		b, err := os.ReadFile(c.ISO)
		if err != nil {
			return Outcome{}, err
		}
		if string(b) != isoContent("/"+c.Name+".iso") || c.Profile != "nixos" || filepath.Dir(c.ISO) != fetchDir {
			return Outcome{}, fmt.Errorf("probe got %+v with %q", c, b)
		}
		mu.Lock()
		probed[c.Name] = true
		mu.Unlock()
		if c.Name >= "c11" {
			return Outcome{Verdict: Bad}, nil
		}
		return Outcome{Verdict: Good}, nil
	})
	res, err := Run(context.Background(), Config{Candidates: cands, Dir: t.TempDir(), FetchDir: fetchDir}, p)
	require.NoError(t, err)
	require.Equal(t, 11, res.FirstBad)
	require.Less(t, len(srv.hits), len(cands), "only the probed candidates are downloaded")
	require.Equal(t, len(probed), len(srv.hits))
	for path, n := range srv.hits {
		require.Equal(t, 1, n, "%s downloaded once", path)
		require.True(t, probed[path[1:len(path)-len(".iso")]], "%s downloaded but not probed", path)
	}
	// A second Fetch is served from the directory.
	c, err := Fetch(context.Background(), cands[0], fetchDir)
	require.NoError(t, err)
	require.FileExists(t, c.ISO)
	require.Equal(t, 1, srv.hits["/c00.iso"])
}

// A download whose digest differs is deleted and stops the bisection: nothing
// unverified boots.
func TestFetchRefusesAWrongDigest(t *testing.T) {
	srv := newISOServer(t)
	fetchDir := t.TempDir()
	cands := urlCandidates(srv, 4)
	cands[0].SHA256 = digest("something else")
	calls := 0
	p := ProberFunc(func(ctx context.Context, c Candidate, attempt int, runDir string) (Outcome, error) {
		calls++
		return Outcome{Verdict: Good}, nil
	})
	_, err := Run(context.Background(), Config{Candidates: cands, Dir: t.TempDir(), FetchDir: fetchDir}, p)
	require.ErrorIs(t, err, ErrAbort)
	require.ErrorContains(t, err, "refusing to boot it")
	require.Zero(t, calls, "the endpoint with the wrong digest is probed first and never booted")
	left, _ := filepath.Glob(filepath.Join(fetchDir, "*.iso"))
	require.Empty(t, left)
	tmp, _ := filepath.Glob(filepath.Join(fetchDir, ".dl-*"))
	require.Empty(t, tmp, "no partial download is left")
}

// The bisect workflow's list: .ci/fetch-isos.sh --lazy writes url= lines (nothing
// downloaded) carrying --profile and --entry, and the list parses back to exactly that.
func TestFetchISOsLazyListRoundTrips(t *testing.T) {
	out := t.TempDir()
	sum := digest("x")
	entries := "https://example.org/a/nixos-25.11.iso#sha256=" + sum + " http://e.org/b.iso?x=1#sha256=" + strings.ToUpper(sum)
	cmd := exec.Command("bash", "../../.ci/fetch-isos.sh", "--lazy", "--profile", "nixos", "--entry", `NixOS "serial" \x`, out, entries)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	require.Contains(t, string(b), "none downloaded")
	isos, _ := filepath.Glob(filepath.Join(out, "*.iso"))
	require.Empty(t, isos, "--lazy downloads nothing")
	cs, err := LoadCandidates(filepath.Join(out, "candidates.txt"))
	require.NoError(t, err)
	require.Equal(t, []Candidate{
		{Name: "01-nixos-25.11", URL: "https://example.org/a/nixos-25.11.iso", SHA256: sum, Profile: "nixos", Entry: `NixOS "serial" \x`},
		{Name: "02-b", URL: "http://e.org/b.iso?x=1", SHA256: sum, Profile: "nixos", Entry: `NixOS "serial" \x`},
	}, cs)

	// bootlab downloads over http(s) only: another scheme is a usage error up front; a
	// local file:// one is checked at once (here it is missing: refused, exit 1).
	cmd = exec.Command("bash", "../../.ci/fetch-isos.sh", "--lazy", t.TempDir(), "ftp://e.org/x.iso#sha256="+sum)
	b, _ = cmd.CombinedOutput()
	require.Equal(t, 2, cmd.ProcessState.ExitCode(), "%s", b)
	cmd = exec.Command("bash", "../../.ci/fetch-isos.sh", "--lazy", t.TempDir(), "file:///nonexistent/x.iso#sha256="+sum)
	b, _ = cmd.CombinedOutput()
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), "%s", b)
	require.Contains(t, string(b), "refusing to boot it")
}
