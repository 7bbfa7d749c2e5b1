package zaplog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
)

// TestEtcdLogsReachTheAgentsLogger: etcd logs through zap; the bridge must keep warnings as warnings, push info
// down to debug, keep fields in order, and hand errors over as errors.
func TestEtcdLogsReachTheAgentsLogger(t *testing.T) {
	var buf bytes.Buffer
	log := logr.FromSlogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	zl := New(log, "etcd", ServerLevels).Named("raft").With(zap.String("member", "abc"))

	zl.Info("became leader")                                        // debug: dropped at info
	zl.Warn("slow fdatasync", zap.String("took", "1.2s"))           // kept as WARN
	zl.Error("failed to send", zap.Error(errors.New("conn reset"))) // kept as ERROR with its error

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want the warning and the error:\n%s", len(lines), buf.String())
	}
	var warn, fail map[string]any
	json.Unmarshal([]byte(lines[0]), &warn)
	json.Unmarshal([]byte(lines[1]), &fail)
	if warn["level"] != "WARN" || warn["msg"] != "slow fdatasync" || warn["took"] != "1.2s" || warn["member"] != "abc" ||
		warn["component"] != "etcd" || warn["logger"] != "raft" {
		t.Errorf("warning: %v", warn)
	}
	if fail["level"] != "ERROR" || fail["error"] != "conn reset" {
		t.Errorf("error: %v", fail)
	}

	buf.Reset()
	debug := logr.FromSlogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.Level(-1)}))
	New(debug, "etcd", ServerLevels).Info("became leader")
	if !strings.Contains(buf.String(), `"became leader"`) {
		t.Errorf("etcd info at V(1) not printed by a V(1) logger: %q", buf.String())
	}
}

// TestClosingListenersAreNotErrors: a stopping member logs its closed listeners as errors; they are debug output.
func TestClosingListenersAreNotErrors(t *testing.T) {
	var buf bytes.Buffer
	log := logr.FromSlogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	zl := New(log, "etcd", ServerLevels)
	zl.Error("setting up serving from embedded etcd failed.", zap.Error(errors.New("mux: server closed")))
	zl.Warn("stopping insecure grpc server due to error", zap.Error(fmt.Errorf("accept tcp 127.0.0.1:2379: %w", net.ErrClosed)))
	if buf.Len() != 0 {
		t.Errorf("closing listeners logged at info or above:\n%s", buf.String())
	}
}
