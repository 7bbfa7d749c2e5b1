// Package zaplog hands the zap logs of etcd (its server in agent-etcd, its client in agentd) to a logr.Logger.
package zaplog

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// LevelMap turns a zap level into the slog level the agent's logger sees. The agent's logging package prints slog
// levels -1..-4 (logr's V(1)..V(4)) only at log-level debug.
type LevelMap func(zapcore.Level) slog.Level

// ServerLevels is for the embedded etcd member: its info lines (elections, snapshots, member changes) are useful when
// debugging and too many otherwise; its warnings (a peer unreachable, slow disk) are what an operator wants to see.
func ServerLevels(l zapcore.Level) slog.Level {
	switch {
	case l < zapcore.InfoLevel:
		return -4
	case l == zapcore.InfoLevel:
		return -1
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// ClientLevels is for etcd's client library, which warns on every retried request while etcd is away; the store
// reports unreachability itself, once per operation, so the client's warnings are debug output.
func ClientLevels(l zapcore.Level) slog.Level {
	switch {
	case l < zapcore.WarnLevel:
		return -4
	case l == zapcore.WarnLevel:
		return -1
	default:
		return slog.LevelError
	}
}

// New returns a zap logger that writes through log, so etcd logs where and how the agent logs.
func New(log logr.Logger, component string, levels LevelMap) *zap.Logger {
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	h := logr.ToSlogHandler(log).WithAttrs([]slog.Attr{slog.String("component", component)})
	return zap.New(&slogCore{h: h, levels: levels})
}

// slogCore is a zapcore.Core that forwards entries to a slog.Handler. Fields keep their order; an error field
// becomes an error value, not its string.
type slogCore struct {
	h      slog.Handler
	levels LevelMap
}

var _ zapcore.Core = (*slogCore)(nil)

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), c.levels(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{h: c.h.WithAttrs(attrs(fields)), levels: c.levels}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := c.levels(e.Level)
	if level > slog.LevelInfo && closing(fields) {
		level = -1 // a stopping member's listeners report their own closing as errors
		if !c.h.Enabled(context.Background(), level) {
			return nil
		}
	}
	r := slog.NewRecord(e.Time, level, e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(attrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

// closing says whether an entry's error is a listener or server that was closed: what etcd logs, as errors and
// warnings, while it stops.
func closing(fields []zapcore.Field) bool {
	for _, f := range fields {
		err, ok := f.Interface.(error)
		if f.Type != zapcore.ErrorType || !ok {
			continue
		}
		if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) || strings.Contains(err.Error(), "server closed") ||
			strings.Contains(err.Error(), "use of closed network connection") {
			return true
		}
	}
	return false
}

func attrs(fields []zapcore.Field) []slog.Attr {
	out := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		if f.Type == zapcore.ErrorType {
			if err, ok := f.Interface.(error); ok {
				out = append(out, slog.Any(f.Key, err))
				continue
			}
		}
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		for k, v := range enc.Fields {
			out = append(out, slog.Any(k, v))
		}
	}
	return out
}
