package store

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestMissingMemberBinary: without agent-etcd the member cannot start, and the error says what is missing where.
func TestMissingMemberBinary(t *testing.T) {
	root := t.TempDir()
	writeTestPKI(t, root, "node-1")
	missing := filepath.Join(t.TempDir(), "agent-etcd")
	cfg := MemberConfig{Root: root, Name: "node-1", PeerURL: testutil.FreeLoopbackURL(t), ClientURL: testutil.FreeLoopbackURL(t), New: true}
	WithBinary(missing)(&cfg)
	_, err := StartMember(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "beside agentd") {
		t.Fatalf("StartMember without agent-etcd: %v", err)
	}
}

// TestMemberProcessDeathIsReported: an agent-etcd that dies is reported (Failed, an error in the log), and a Close
// afterwards returns at once.
func TestMemberProcessDeathIsReported(t *testing.T) {
	log, logged := testLogSearch(t)
	n := initNode(t, log)
	if err := syscall.Kill(n.m.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.m.Failed():
	case <-time.After(20 * time.Second):
		t.Fatal("a killed agent-etcd was not reported as failed")
	}
	if !logged("This node's etcd member stopped by itself") || !logged("signal: killed") {
		t.Error("the death of agent-etcd was not logged with how it ended")
	}
	if !n.m.removed(context.Background(), time.Second) {
		t.Error("a member that died does not count as stopped by itself")
	}
	n.m.Close()
}

// TestMemberClosedIsNotFailed: Close stops agent-etcd without reporting a failure.
func TestMemberClosedIsNotFailed(t *testing.T) {
	n := initNode(t, testLog(t))
	n.m.Close()
	select {
	case <-n.m.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	select {
	case <-n.m.Failed():
		t.Fatal("a closed member reported as failed")
	default:
	}
	if n.m.removed(context.Background(), time.Second) {
		t.Error("a closed member counts as removed")
	}
}

// TestMemberLogKeepsLevelsAndFields: agent-etcd's records reach the agent's logger with their level, message and
// fields in order; text that is no record (a panic) does not.
func TestMemberLogKeepsLevelsAndFields(t *testing.T) {
	var child bytes.Buffer
	cl := slog.New(slog.NewJSONHandler(&child, &slog.HandlerOptions{Level: slog.Level(-4)}))
	cl.Warn("slow fdatasync", "component", "etcd", "took", "1.2s", "n", 3)
	cl.Log(context.Background(), -1, "became leader", "term", 2)
	child.WriteString("panic: boom\n")

	var got bytes.Buffer
	m := &Member{cfg: MemberConfig{Log: logr.FromSlogHandler(slog.NewJSONHandler(&got, &slog.HandlerOptions{Level: slog.LevelInfo}))}}
	m.forwardLog(&child)
	lines := strings.Split(strings.TrimSpace(got.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want only the warning at info level, got:\n%s", got.String())
	}
	if !strings.Contains(lines[0], `"msg":"slow fdatasync","component":"etcd","took":"1.2s","n":3`) {
		t.Errorf("fields out of order or lost: %s", lines[0])
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil || rec["level"] != "WARN" {
		t.Errorf("level lost: %s (%v)", lines[0], err)
	}
	if !strings.Contains(m.output.String(), "panic: boom") {
		t.Errorf("plain output not kept: %q", m.output.String())
	}
	if lowestLevel(logr.Discard()) <= int(slog.LevelError) {
		t.Error("a discarding logger asks agent-etcd for records")
	}
}
