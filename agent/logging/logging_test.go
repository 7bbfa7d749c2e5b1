package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimRight(buf.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestLevelVarChangesWhatIsLogged(t *testing.T) {
	var buf bytes.Buffer
	log, lv, err := New("info", "text", &buf)
	if err != nil {
		t.Fatal(err)
	}
	child := log.WithName("source").WithValues("dir", "/etc/agent/manifests")

	log.V(1).Info("Debug before")
	child.V(1).Info("Child debug before")
	log.Info("Info before")
	if got := lines(&buf); len(got) != 1 || !strings.Contains(got[0], `msg="Info before"`) {
		t.Fatalf("at info, want only the info line, got %q", got)
	}

	buf.Reset()
	lv.Set(slog.LevelDebug)
	log.V(1).Info("Debug after")
	child.V(1).Info("Child debug after")
	got := lines(&buf)
	if len(got) != 2 || !strings.Contains(got[0], `msg="Debug after"`) || !strings.Contains(got[1], `msg="Child debug after"`) {
		t.Fatalf("after LevelVar.Set(debug), want both V(1) lines, got %q", got)
	}
	if !strings.Contains(got[1], "logger=source") || !strings.Contains(got[1], "dir=/etc/agent/manifests") {
		t.Errorf("derived logger lost its name or values: %q", got[1])
	}

	buf.Reset()
	lv.Set(slog.LevelError)
	log.Info("Info hidden")
	log.Error(errors.New("boom"), "Could not start pod", "pod", "web")
	got = lines(&buf)
	if len(got) != 1 || !strings.Contains(got[0], "level=ERROR") || !strings.Contains(got[0], "err=boom") {
		t.Fatalf("at error, want only the error line, got %q", got)
	}
}

func TestJSONFormatEmitsJSONLines(t *testing.T) {
	var buf bytes.Buffer
	log, _, err := New("debug", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("Pod started", "pod", "default/web", "restarts", 2)
	log.WithName("monitor").V(1).Info("Adopted monitor", "pid", 42)
	log.Error(errors.New("no such file"), "Could not process manifest file", "path", "/etc/agent/manifests/a.yaml")

	got := lines(&buf)
	if len(got) != 3 {
		t.Fatalf("want 3 lines, got %d: %q", len(got), got)
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "Pod started", "pod": "default/web", "restarts": 2.0},
		{"level": "DEBUG", "msg": "Adopted monitor", "logger": "monitor", "pid": 42.0},
		{"level": "ERROR", "msg": "Could not process manifest file", "err": "no such file", "path": "/etc/agent/manifests/a.yaml"},
	}
	for i, line := range got {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i, err, line)
		}
		if _, ok := m["time"]; !ok {
			t.Errorf("line %d has no time: %s", i, line)
		}
		for k, v := range want[i] {
			if m[k] != v {
				t.Errorf("line %d: %s = %v, want %v (%s)", i, k, m[k], v, line)
			}
		}
	}
}

func TestReconfigureSwitchesFormatAndLevelOfDerivedLoggers(t *testing.T) {
	var buf bytes.Buffer
	log, lv, err := New("info", "text", &buf)
	if err != nil {
		t.Fatal(err)
	}
	child := log.WithName("runtime").WithValues("pod", "web")
	child.Info("Before")
	if err := Reconfigure(child, "debug", "json"); err != nil {
		t.Fatal(err)
	}
	child.V(1).Info("After")
	log.Info("Root after")

	got := lines(&buf)
	if len(got) != 3 {
		t.Fatalf("want 3 lines, got %q", got)
	}
	if !strings.HasPrefix(got[0], "time=") || !strings.Contains(got[0], "pod=web") {
		t.Errorf("first line is not the text line: %q", got[0])
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got[1]), &m); err != nil {
		t.Fatalf("after Reconfigure to json, line is not JSON: %v: %s", err, got[1])
	}
	if m["msg"] != "After" || m["pod"] != "web" || m["logger"] != "runtime" {
		t.Errorf("derived logger after Reconfigure: %v", m)
	}
	if err := json.Unmarshal([]byte(got[2]), &m); err != nil {
		t.Errorf("root logger did not switch to json: %s", got[2])
	}
	if lv.Level() != slog.LevelDebug {
		t.Errorf("Reconfigure did not set the returned LevelVar: %v", lv.Level())
	}
}

func TestReconfigureRejectsBadValuesAndKeepsOldOnes(t *testing.T) {
	var buf bytes.Buffer
	log, lv, err := New("warn", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ level, format, want string }{
		{"verbose", "text", `log level "verbose"`},
		{"debug", "xml", `log format "xml"`},
	} {
		err := Reconfigure(log, tc.level, tc.format)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Reconfigure(%q, %q) = %v, want error containing %q", tc.level, tc.format, err, tc.want)
		}
	}
	if lv.Level() != slog.LevelWarn {
		t.Errorf("level changed by a rejected Reconfigure: %v", lv.Level())
	}
	log.Info("Hidden")
	log.Info("Hidden too")
	log.Error(nil, "Shown")
	if got := lines(&buf); len(got) != 1 || !json.Valid([]byte(got[0])) {
		t.Errorf("want one JSON error line, got %q", got)
	}
	if err := Reconfigure(logr.Discard(), "info", "text"); !errors.Is(err, ErrNotOurs) {
		t.Errorf("Reconfigure(Discard) = %v, want ErrNotOurs", err)
	}
}

func TestNewRejectsBadValues(t *testing.T) {
	if _, _, err := New("trace", "text", &bytes.Buffer{}); err == nil {
		t.Error("New accepted level trace")
	}
	if _, _, err := New("info", "logfmt", &bytes.Buffer{}); err == nil {
		t.Error("New accepted format logfmt")
	}
	if _, _, err := New("INFO", "JSON", &bytes.Buffer{}); err != nil {
		t.Errorf("New is case-sensitive: %v", err)
	}
}
