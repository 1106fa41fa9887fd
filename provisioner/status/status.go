// Package status reads and writes pre-nixos's status files (storage-status,
// network-status): one KEY=VALUE per line. Test scenarios import Parse to
// check what a booted image reported.
package status

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// File names inside the state directory.
const (
	StorageFile = "storage-status"
	NetworkFile = "network-status"
	// DefaultDir is used when PRE_NIXOS_STATE_DIR is unset or empty.
	DefaultDir = "/run/pre-nixos"
	// DirEnv names the state directory everywhere (one rule, unlike the Python pre-nixos).
	DirEnv = "PRE_NIXOS_STATE_DIR"
)

// Keys and values written to storage-status and network-status.
const (
	KeyState   = "STATE"
	KeyDetail  = "DETAIL"
	KeyBackend = "BACKEND"
	KeyError   = "ERROR"
	KeyLANIPv4 = "LAN_IPV4"

	StateApplied  = "applied"
	StatePlanOnly = "plan-only"
	StateFailed   = "failed"

	DetailAutoApplied     = "auto-applied"
	DetailExistingStorage = "existing-storage"
	DetailForceCleanup    = "existing-storage-force-cleanup"
	DetailDetectionError  = "detection-error"
	// StateInProgress is written before anything else, so a kill or a
	// crash never leaves a stale or missing file that reads as finished.
	StateInProgress = "in-progress"
	// DetailStarted goes with StateInProgress.
	DetailStarted = "started"
	// DetailInventoryError: the disk inventory could not be read; nothing
	// was planned or applied.
	DetailInventoryError = "inventory-error"
	// DetailManualApply: an operator ran `pre-nixos` (plan + apply) by hand.
	DetailManualApply = "manual-apply"
	// DetailPanic: pre-nixos crashed; ERROR says where.
	DetailPanic = "internal-error"
)

// Dir returns the state directory chosen by getenv.
func Dir(getenv func(string) string) string {
	if d := strings.TrimSpace(getenv(DirEnv)); d != "" {
		return d
	}
	return DefaultDir
}

// Status is a parsed status file.
type Status map[string]string

// State is the STATE value ("" when absent).
func (s Status) State() string { return s[KeyState] }

// Detail is the DETAIL value.
func (s Status) Detail() string { return s[KeyDetail] }

// LANIPv4 is the LAN_IPV4 value.
func (s Status) LANIPv4() string { return s[KeyLANIPv4] }

const maxLine = 4096

// Parse reads KEY=VALUE lines. Blank lines and lines starting with '#' are
// ignored and a trailing CR is dropped (files read over a serial console).
// Keys must be upper-case letters, digits and '_'; a repeated key, a line
// without '=' or an over-long line is an error rather than a guess.
func Parse(r io.Reader) (Status, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	st := Status{}
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if len(line) >= maxLine-1 {
			return nil, fmt.Errorf("status line %d: longer than %d bytes", n, maxLine-2)
		}
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("status line %d: %q has no '='", n, line)
		}
		if !validKey(key) {
			return nil, fmt.Errorf("status line %d: invalid key %q", n, key)
		}
		if _, dup := st[key]; dup {
			return nil, fmt.Errorf("status line %d: key %s repeated", n, key)
		}
		if strings.ContainsAny(value, "\r\x00") {
			return nil, fmt.Errorf("status line %d: value of %s contains a control character", n, key)
		}
		st[key] = value
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("status line %d: longer than %d bytes", n+1, maxLine)
		}
		return nil, fmt.Errorf("reading status: %w", err)
	}
	return st, nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// keyOrder puts the well-known keys first so files read naturally.
var keyOrder = map[string]int{KeyState: 0, KeyDetail: 1, KeyBackend: 2, KeyError: 3, KeyLANIPv4: 4}

// Format renders s with well-known keys first, the rest sorted. Values are
// flattened to one line so the file always parses back.
func Format(s Status) ([]byte, error) {
	keys := make([]string, 0, len(s))
	for k := range s {
		if !validKey(k) {
			return nil, fmt.Errorf("formatting status: invalid key %q", k)
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		oi, iok := keyOrder[keys[i]]
		oj, jok := keyOrder[keys[j]]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return keys[i] < keys[j]
	})
	var b bytes.Buffer
	for _, k := range keys {
		v := strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\x00", "").Replace(s[k])
		if len(k)+1+len(v) >= maxLine-1 {
			v = v[:maxLine-len(k)-3]
		}
		b.WriteString(k + "=" + v + "\n")
	}
	return b.Bytes(), nil
}
