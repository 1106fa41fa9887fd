package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// qmpClient wraps go-qemu's socket monitor with the deadlines it lacks
// (docs/decisions.md, "QMP: go-qemu behind deadlines"): Connect and Run can block
// forever on a wedged QEMU, so each runs in a goroutine that the caller abandons when
// its context ends. An abandoned call is
// unblocked for good when QEMU exits and its socket closes, which Stop guarantees.
// After a timeout the client is marked broken and its connection is never used again,
// because go-qemu matches replies by order and a late reply would be handed to the next
// command; the next command closes it and connects anew (QEMU serves one QMP client at
// a time), so one wedged command does not cost every later stage, quit above all.
type qmpClient struct {
	mon    *qmp.SocketMonitor
	broken error
}

// QMP runs one command with optional arguments and checks that QEMU accepted it.
func (m *Machine) QMP(ctx context.Context, command string, args map[string]any) error {
	_, err := m.QMPRaw(ctx, command, args)
	return err
}

// Status returns the VM run state from query-status ("running", "paused", ...).
func (m *Machine) Status(ctx context.Context) (string, error) {
	raw, err := m.QMPRaw(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var r struct {
		Return *struct {
			Status  string `json:"status"`
			Running bool   `json:"running"`
		} `json:"return"`
	}
	// Verify the reply's shape: an event taken for the reply (go-qemu#210) has none.
	if err := json.Unmarshal(raw, &r); err != nil || r.Return == nil || r.Return.Status == "" {
		return "", fmt.Errorf("query-status: unexpected reply %s", raw)
	}
	return r.Return.Status, nil
}

// QMPRaw runs a command and returns QEMU's raw reply.
func (m *Machine) QMPRaw(ctx context.Context, command string, args map[string]any) ([]byte, error) {
	m.qmpMu.Lock()
	defer m.qmpMu.Unlock()
	if m.waitExit(0) {
		return nil, fmt.Errorf("qmp %s: QEMU has exited (%s)", command, m.ExitStatus())
	}
	if m.qmp != nil && m.qmp.broken != nil {
		// The old connection may still get the late reply; it must not reach this
		// command. Closing it lets QEMU accept the new one.
		m.log.Warn("qemu.qmp_reconnect", "command", command, "because", m.qmp.broken.Error())
		old := m.qmp.mon
		m.qmp = nil
		go func() { _ = old.Disconnect() }() // drains the old reader; never block the stop on it
	}
	if m.qmp == nil {
		c, err := connectQMP(ctx, m.Files.QMP)
		if err != nil {
			return nil, err
		}
		m.qmp = c
	}
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	type result struct {
		raw []byte
		err error
	}
	done := make(chan result, 1)
	mon := m.qmp.mon
	go func() {
		raw, err := mon.Run(body)
		done <- result{raw, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			if command == "quit" && m.waitExit(2*time.Second) {
				return nil, nil // QEMU may close the socket before replying to quit
			}
			m.qmp.broken = fmt.Errorf("%s failed: %w", command, r.err) // a dead connection: the next command dials again
			return nil, fmt.Errorf("qmp %s: %w", command, r.err)
		}
		var reply struct {
			Return json.RawMessage `json:"return"`
		}
		if err := json.Unmarshal(r.raw, &reply); err != nil || reply.Return == nil {
			m.qmp.broken = fmt.Errorf("reply to %s was not a return: %s", command, r.raw)
			return nil, fmt.Errorf("qmp %s: %w", command, m.qmp.broken)
		}
		return r.raw, nil
	case <-ctx.Done():
		m.qmp.broken = fmt.Errorf("%s timed out", command)
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

func connectQMP(ctx context.Context, socket string) (*qmpClient, error) {
	deadline, ok := ctx.Deadline()
	dial := 5 * time.Second
	if ok {
		dial = time.Until(deadline)
	}
	mon, err := qmp.NewSocketMonitor("unix", socket, dial)
	if err != nil {
		return nil, fmt.Errorf("connecting to QMP at %s: %w", socket, err)
	}
	done := make(chan error, 1)
	go func() { done <- mon.Connect() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("QMP handshake at %s: %w", socket, err)
		}
		return &qmpClient{mon: mon}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("QMP handshake at %s: %w", socket, errors.Join(ctx.Err(), errors.New("QEMU did not greet")))
	}
}

// SaveState streams the guest's whole state (memory and devices) to file through QEMU's
// migration and waits until it is written; the guest is left paused (postmigrate). A VM
// started with Config.RestoreFrom=file on the same disks resumes there.
func (m *Machine) SaveState(ctx context.Context, file string) error {
	if err := CheckStatePath(file); err != nil {
		return err
	}
	if err := m.QMP(ctx, "migrate", map[string]any{"uri": "exec:cat > " + file}); err != nil {
		return fmt.Errorf("saving the guest state: %w", err)
	}
	for {
		raw, err := m.QMPRaw(ctx, "query-migrate", nil)
		if err != nil {
			return fmt.Errorf("saving the guest state: %w", err)
		}
		var r struct {
			Return struct {
				Status    string `json:"status"`
				ErrorDesc string `json:"error-desc"`
			} `json:"return"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("saving the guest state: query-migrate said %s", raw)
		}
		switch r.Return.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("saving the guest state: migration %s: %s", r.Return.Status, r.Return.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("saving the guest state: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// CheckStatePath refuses a state file path a shell would split or expand: QEMU runs
// exec: migration, both ways, through /bin/sh.
func CheckStatePath(file string) error {
	if !statePath.MatchString(file) {
		return fmt.Errorf("state file %q: only letters, digits and / . _ - (QEMU runs it through a shell)", file)
	}
	return nil
}

var statePath = regexp.MustCompile(`^[A-Za-z0-9/._-]+$`)
