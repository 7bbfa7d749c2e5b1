// Package logging builds agentd's logr.Logger on top of log/slog and lets SIGHUP change it in place.
//
// Settings: log-level (debug, info, warn, error) and log-format (text, json), both reloadable. At level debug the
// logger also prints logr's V(1) to V(4) messages; at info only V(0). Errors are always printed.
//
// Reconfigure changes the level and the format of a logger returned by New, and of every logger derived from it
// (WithValues, WithName, V), without handing new loggers to the rest of the agent.
package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
)

// Levels and Formats are the accepted values of log-level and log-format.
var (
	Levels  = []string{"debug", "info", "warn", "error"}
	Formats = []string{"text", "json"}
)

// ErrNotOurs is returned by Reconfigure for a logger that New did not build.
var ErrNotOurs = errors.New("logger was not created by logging.New")

// ParseLevel maps a log-level value to its slog level. Case does not matter.
func ParseLevel(level string) (slog.Level, error) {
	switch strings.ToLower(level) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want one of %s", level, strings.Join(Levels, ", "))
}

func parseFormat(format string) (string, error) {
	f := strings.ToLower(format)
	if f != "text" && f != "json" {
		return "", fmt.Errorf("log format %q: want one of %s", format, strings.Join(Formats, ", "))
	}
	return f, nil
}

// New returns a logger writing one line per message to w in the given format (text: slog's key=value lines,
// json: one JSON object per line), and the LevelVar that filters it: setting the LevelVar takes effect at once for
// this logger and every logger derived from it.
func New(level, format string, w io.Writer) (logr.Logger, *slog.LevelVar, error) {
	lv, err := ParseLevel(level)
	if err != nil {
		return logr.Discard(), nil, err
	}
	f, err := parseFormat(format)
	if err != nil {
		return logr.Discard(), nil, err
	}
	r := &root{w: &lockedWriter{w: w}, level: new(slog.LevelVar)}
	r.level.Set(lv)
	r.base.Store(r.newBase(f))
	return logr.FromSlogHandler(&handler{root: r}), r.level, nil
}

// Reconfigure sets the level and format of a logger built by New (or derived from one). Both values are checked
// before anything changes, so an error leaves the logger as it was.
func Reconfigure(logger logr.Logger, level, format string) error {
	u, ok := logger.GetSink().(logr.Underlier)
	if !ok {
		return ErrNotOurs
	}
	h, ok := u.GetUnderlying().(*handler)
	if !ok {
		return ErrNotOurs
	}
	lv, err := ParseLevel(level)
	if err != nil {
		return err
	}
	f, err := parseFormat(format)
	if err != nil {
		return err
	}
	h.root.reconfigure(lv, f)
	return nil
}

// root is what all handlers derived from one New share.
type root struct {
	w     *lockedWriter
	level *slog.LevelVar

	mu   sync.Mutex                // serializes reconfigure; readers use base without it
	base atomic.Pointer[baseState] // the current format's handler, replaced whole on a format change
}

type baseState struct {
	format string
	h      slog.Handler
}

func (r *root) newBase(format string) *baseState {
	opts := &slog.HandlerOptions{Level: r.level, ReplaceAttr: debugLevelName}
	if format == "json" {
		return &baseState{format: format, h: slog.NewJSONHandler(r.w, opts)}
	}
	return &baseState{format: format, h: slog.NewTextHandler(r.w, opts)}
}

// debugLevelName prints logr's V(1)..V(4) levels (slog -1..-4) as DEBUG instead of slog's DEBUG+3..DEBUG: the
// operator chose "debug", not a number.
func debugLevelName(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.LevelKey {
		if l, ok := a.Value.Any().(slog.Level); ok && l < slog.LevelInfo {
			return slog.String(slog.LevelKey, "DEBUG")
		}
	}
	return a
}

func (r *root) reconfigure(level slog.Level, format string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.base.Load().format != format {
		r.base.Store(r.newBase(format))
	}
	r.level.Set(level)
}

// handler is the slog.Handler behind the logr.Logger: it forwards to the root's current base handler with the
// WithAttrs and WithGroup calls made on it replayed, and rebuilds that derived handler when the format changes.
type handler struct {
	root *root
	ops  []func(slog.Handler) slog.Handler // WithAttrs/WithGroup in call order; never mutated, only copied

	derived atomic.Pointer[derivedState] // cache: ops applied to one base
}

type derivedState struct {
	base *baseState
	h    slog.Handler
}

var _ slog.Handler = (*handler)(nil)

func (h *handler) current() slog.Handler {
	base := h.root.base.Load()
	if len(h.ops) == 0 {
		return base.h
	}
	if d := h.derived.Load(); d != nil && d.base == base {
		return d.h
	}
	out := base.h
	for _, op := range h.ops {
		out = op(out)
	}
	h.derived.Store(&derivedState{base: base, h: out})
	return out
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.root.level.Level() <= level
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	return h.current().Handle(ctx, r)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(func(b slog.Handler) slog.Handler { return b.WithAttrs(attrs) })
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(func(b slog.Handler) slog.Handler { return b.WithGroup(name) })
}

func (h *handler) with(op func(slog.Handler) slog.Handler) *handler {
	ops := make([]func(slog.Handler) slog.Handler, 0, len(h.ops)+1)
	ops = append(append(ops, h.ops...), op)
	return &handler{root: h.root, ops: ops}
}

// lockedWriter keeps lines whole across a format change: the old and the new slog handler each lock only themselves.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
