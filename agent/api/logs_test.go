package api_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/api/apitest"
)

// criLines is a CRI log of lines on stdout, one second apart.
func criLines(lines ...string) string {
	var b strings.Builder
	for i, l := range lines {
		fmt.Fprintf(&b, "2026-11-27T08:00:%02d.000000000Z stdout F %s\n", i, l)
	}
	return b.String()
}

// logTree makes a log directory like agentd's: <root>/default_web_uid/app/{0,1}.log.
func logTree(t *testing.T, ts *testServer) (root string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "pods")
	dir := filepath.Join(root, "default_web_uid", "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "0.log"), criLines("first run"))
	write(t, filepath.Join(dir, "1.log"), criLines("one", "two", "three", "four"))
	ts.f.Lock()
	ts.f.LogRoot, ts.f.LogName, ts.f.PreviousLogName = root, "default_web_uid/app/1.log", "default_web_uid/app/0.log"
	ts.f.Unlock()
	return root
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func logs(t *testing.T, ts *testServer, o api.LogOptions) (string, error) {
	t.Helper()
	var b bytes.Buffer
	err := ts.c.Logs(testCtx(t), "default", "web", o, &b)
	return b.String(), err
}

func TestLogs(t *testing.T) {
	ts := newTestServer(t)
	logTree(t, ts)
	for _, tc := range []struct {
		name string
		o    api.LogOptions
		want string
	}{
		{"all", api.LogOptions{TailLines: -1}, "one\ntwo\nthree\nfour\n"},
		{"tail", api.LogOptions{TailLines: 2}, "three\nfour\n"},
		{"tail 0", api.LogOptions{TailLines: 0}, ""},
		{"tail more than there is", api.LogOptions{TailLines: 10}, "one\ntwo\nthree\nfour\n"},
		{"previous", api.LogOptions{TailLines: -1, Previous: true}, "first run\n"},
		{"container", api.LogOptions{TailLines: -1, Container: "app"}, "one\ntwo\nthree\nfour\n"},
		{"timestamps", api.LogOptions{TailLines: 1, Timestamps: true}, "2026-11-27T08:00:03.000000000Z four\n"},
	} {
		got, err := logs(t, ts, tc.o)
		if err != nil || got != tc.want {
			t.Errorf("%s: logs %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	wantCalls(t, ts.f, []apitest.Call{
		call("LogFile", "default", "web", "", false), call("LogFile", "default", "web", "", false),
		call("LogFile", "default", "web", "", false), call("LogFile", "default", "web", "", false),
		call("LogFile", "default", "web", "", true), call("LogFile", "default", "web", "app", false),
		call("LogFile", "default", "web", "", false),
	})

	code, body := ts.do(t, http.MethodGet, "/api/v1/namespaces/default/pods/web/log?tailLines=ten", "", "")
	wantFailure(t, "tailLines=ten", code, body, http.StatusBadRequest, "BadRequest", "tailLines")
}

// TestLogsNotWrittenYet: a container whose log file does not exist yet (it has written nothing) has an empty log.
func TestLogsNotWrittenYet(t *testing.T) {
	ts := newTestServer(t)
	logTree(t, ts)
	ts.f.Lock()
	ts.f.LogName = "default_web_uid/app/2.log"
	ts.f.Unlock()
	if got, err := logs(t, ts, api.LogOptions{TailLines: -1}); err != nil || got != "" {
		t.Errorf("logs of a file not yet written: %q, %v; want nothing", got, err)
	}
}

// TestLogsRefuseSymlinks: a pod may be able to write into the log directory, and agentd is root: a symlink
// planted in place of a log file, or of a directory above it, is refused, not followed, and the answer says so.
func TestLogsRefuseSymlinks(t *testing.T) {
	ts := newTestServer(t)
	root := logTree(t, ts)
	secretDir := filepath.Join(t.TempDir(), "secret")
	if err := os.MkdirAll(filepath.Join(secretDir, "app"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(secretDir, "app", "1.log"), criLines("SECRET"))
	if err := os.Symlink(filepath.Join(secretDir, "app", "1.log"), filepath.Join(root, "default_web_uid", "app", "2.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secretDir, filepath.Join(root, "default_evil_uid")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		follow     bool
		msg        string // what the answer says
	}{
		{"a symlinked file", "default_web_uid/app/2.log", false, "default_web_uid/app/2.log: not a regular file with one link"},
		{"a symlinked file, followed", "default_web_uid/app/2.log", true, "default_web_uid/app/2.log: not a regular file with one link"},
		{"a symlinked directory", "default_evil_uid/app/1.log", false, "default_evil_uid: not a directory"},
		{"a symlinked directory, followed", "default_evil_uid/app/1.log", true, "default_evil_uid: not a directory"},
	} {
		ts.f.Lock()
		ts.f.LogName = tc.file
		ts.f.Unlock()
		got, err := logs(t, ts, api.LogOptions{TailLines: -1, Follow: tc.follow})
		if err == nil || strings.Contains(got, "SECRET") || strings.Contains(fmt.Sprint(err), "SECRET") {
			t.Errorf("%s: logs %q, %v; want an error and nothing of the file", tc.name, got, err)
			continue
		}
		q := "?tailLines=-1"
		if tc.follow {
			q += "&follow=true"
		}
		code, body := ts.do(t, http.MethodGet, "/api/v1/namespaces/default/pods/web/log"+q, "", "")
		wantFailure(t, tc.name, code, body, http.StatusInternalServerError, "InternalError", tc.msg)
		ts.log.wait(t, "Reading a log failed", tc.file)
	}
	// A file planted with a hard link is refused too (it would be the file linked to).
	if err := os.Link(filepath.Join(secretDir, "app", "1.log"), filepath.Join(root, "default_web_uid", "app", "3.log")); err != nil {
		t.Fatal(err)
	}
	ts.f.Lock()
	ts.f.LogName = "default_web_uid/app/3.log"
	ts.f.Unlock()
	if got, err := logs(t, ts, api.LogOptions{TailLines: -1}); err == nil || strings.Contains(got, "SECRET") {
		t.Errorf("a hard link: logs %q, %v; want an error and nothing of the file", got, err)
	}
}

// TestLogsFollow: with follow, what is in the file comes at once and lines appended later as they are written,
// until the client stops.
func TestLogsFollow(t *testing.T) {
	ts := newTestServer(t)
	root := logTree(t, ts)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- ts.c.Logs(ctx, "default", "web", api.LogOptions{TailLines: 1, Follow: true}, pw)
		pw.Close()
	}()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if got := recv(t, "the last line", lines); got != "four" {
		t.Fatalf("first line %q, want four (tail 1)", got)
	}
	f, err := os.OpenFile(filepath.Join(root, "default_web_uid", "app", "1.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range []string{"five", "six"} {
		if _, err := f.WriteString(strings.Replace(criLines(l), "08:00:00", "08:01:00", 1)); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, "an appended line", lines); got != l {
			t.Fatalf("followed line %q, want %q", got, l)
		}
	}
	cancel()
	if err := recv(t, "Logs to return", done); err != nil {
		t.Errorf("Logs after its context was cancelled: %v, want nil", err)
	}
	if l, ok := <-lines; ok {
		t.Errorf("line %q after the end", l)
	}
}

func TestLogsErrors(t *testing.T) {
	ts := newTestServer(t)
	ts.f.Lock()
	ts.f.Err["LogFile"] = fmt.Errorf("%w: previous terminated container %q in pod %q not found", api.ErrBadRequest, "app", "web")
	ts.f.Unlock()
	_, err := logs(t, ts, api.LogOptions{TailLines: -1, Previous: true})
	if !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "previous terminated container") {
		t.Errorf("logs --previous without one: %v, want ErrBadRequest with the backend's message", err)
	}
}

// sinceTime, sinceSeconds and limitBytes, as Kubernetes' PodLogOptions; tailLines with
// follow prints the last lines and then follows.
func TestLogsSinceAndLimit(t *testing.T) {
	ts := newTestServer(t)
	logTree(t, ts) // lines stamped 08:00:00 .. 08:00:03 on 2026-11-27
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name string
		o    api.LogOptions
		want string
	}{
		{"sinceTime", api.LogOptions{TailLines: -1, SinceTime: at("2026-11-27T08:00:02Z")}, "three\nfour\n"},
		{"sinceTime after all", api.LogOptions{TailLines: -1, SinceTime: at("2026-11-27T09:00:00Z")}, ""},
		{"sinceSeconds: all are older", api.LogOptions{TailLines: -1, SinceSeconds: 60}, ""},
		{"limitBytes cuts a line", api.LogOptions{TailLines: -1, LimitBytes: 6}, "one\ntw"},
		{"limitBytes more than there is", api.LogOptions{TailLines: -1, LimitBytes: 1000}, "one\ntwo\nthree\nfour\n"},
		{"tail and sinceTime", api.LogOptions{TailLines: 1, SinceTime: at("2026-11-27T08:00:01Z")}, "four\n"},
	} {
		got, err := logs(t, ts, tc.o)
		if err != nil || got != tc.want {
			t.Errorf("%s: logs %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for _, q := range []string{"sinceSeconds=1&sinceTime=2026-11-27T08:00:00Z", "sinceSeconds=-1", "sinceTime=yesterday", "limitBytes=0"} {
		code, body := ts.do(t, "GET", "/api/v1/namespaces/default/pods/web/log?"+q, "", "")
		if code != http.StatusBadRequest {
			t.Errorf("log?%s: %d %s, want 400", q, code, body)
		}
	}

	// Following with limitBytes ends the stream once the limit is reached.
	done := make(chan error, 1)
	var b bytes.Buffer
	go func() {
		done <- ts.c.Logs(testCtx(t), "default", "web", api.LogOptions{TailLines: 2, Follow: true, LimitBytes: 8}, &b)
	}()
	if err := recv(t, "a followed log to end at its limit", done); err != nil || b.String() != "three\nfo" {
		t.Errorf("follow with limitBytes: %q, %v; want %q", b.String(), err, "three\nfo")
	}
}
