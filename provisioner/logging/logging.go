// Package logging sets up pre-nixos's structured logs: slog JSON lines with
// the record's message used as the event name (`pre_nixos.<area>.<event>`),
// written to stderr and appended to the actions log.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultFile is the actions log on the target system.
const DefaultFile = "/var/log/pre-nixos/actions.log"

// Enabled reports whether PRE_NIXOS_LOG_EVENTS allows logging. Unlike the
// Python pre-nixos, logs are on unless explicitly turned off, so a boot image always
// leaves evidence behind.
func Enabled(getenv func(string) string) bool {
	switch strings.ToLower(strings.TrimSpace(getenv("PRE_NIXOS_LOG_EVENTS"))) {
	case "0", "false", "no", "off":
		return false
	}
	return true
}

// New returns a JSON logger writing to w. The message key becomes "event" and
// the time key "timestamp" (UTC) so lines read like the Python pre-nixos's records.
func New(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.MessageKey:
				a.Key = "event"
			case slog.TimeKey:
				a.Key = "timestamp"
				if t, ok := a.Value.Any().(time.Time); ok {
					a.Value = slog.StringValue(t.UTC().Format(time.RFC3339Nano))
				}
			}
			return a
		},
	}))
}

// Open returns a logger writing to stderr and appending to file (an absolute
// path already mapped under --root by the caller). A log file that cannot be
// opened is reported on stderr and otherwise ignored: logging must never stop
// provisioning.
func Open(stderr io.Writer, file string, level slog.Level) (*slog.Logger, io.Closer) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		fmt.Fprintf(stderr, "pre-nixos: failed to write log to %s: %v\n", file, err)
		return New(stderr, level), io.NopCloser(nil)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		fmt.Fprintf(stderr, "pre-nixos: failed to write log to %s: %v\n", file, err)
		return New(stderr, level), io.NopCloser(nil)
	}
	return New(io.MultiWriter(stderr, f), level), f
}

// Discard is a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
