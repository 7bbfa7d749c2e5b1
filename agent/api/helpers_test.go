package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/api/apitest"
)

// waitTimeout bounds every wait for something the server does: generous, for a busy CI machine.
const waitTimeout = 30 * time.Second

// logLines collects what the server logs.
type logLines struct {
	mu    sync.Mutex // guards lines
	lines []string
	added chan struct{} // signalled (coalesced) on every line
}

func newLogLines() *logLines { return &logLines{added: make(chan struct{}, 1)} }

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, prefix+args)
		l.mu.Unlock()
		select {
		case l.added <- struct{}{}:
		default:
		}
	}, funcr.Options{})
}

// wait returns the first line that contains every one of parts, waiting for it up to waitTimeout.
func (l *logLines) wait(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		l.mu.Lock()
		for _, line := range l.lines {
			if containsAll(line, parts) {
				l.mu.Unlock()
				return line
			}
		}
		all := strings.Join(l.lines, "\n")
		l.mu.Unlock()
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no log line with %q; the server logged:\n%s", parts, all)
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// testServer is a Server over a FakeBackend on a socket in a temporary directory.
type testServer struct {
	f      *apitest.FakeBackend
	c      *api.Client
	sock   string
	log    *logLines
	server *api.Server
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{f: apitest.NewFakeBackend(), sock: filepath.Join(t.TempDir(), "agent.sock"), log: newLogLines()}
	s, err := api.Listen(ts.sock, ts.f, ts.log.logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ts.server, ts.c = s, api.NewClient(ts.sock)
	return ts
}

// do makes a raw request and returns the answer's status code and body.
func (ts *testServer) do(t *testing.T, method, path, contentType, body string) (int, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", ts.sock)
	}}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://agentd"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", method, path, err)
	}
	return resp.StatusCode, data
}

// wantFailure checks that an answer is a Failure Status with code and reason whose message contains msg.
func wantFailure(t *testing.T, what string, code int, body []byte, wantCode int, reason, msg string) {
	t.Helper()
	var st api.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("%s: answer %d %q is not a Status: %v", what, code, body, err)
	}
	if code != wantCode || st.Code != wantCode || st.Kind != "Status" || st.Status != "Failure" || st.Reason != reason ||
		!strings.Contains(st.Message, msg) {
		t.Errorf("%s: answer %d %+v, want %d %s with a message containing %q", what, code, st, wantCode, reason, msg)
	}
}

func decodeStatus(t *testing.T, body []byte) api.Status {
	t.Helper()
	var st api.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("answer %q is not a Status: %v", body, err)
	}
	return st
}

// decode decodes a JSON answer; the test fails unless code is 200.
func decode[T any](t *testing.T, what string, code int, body []byte) T {
	t.Helper()
	var v T
	if code != http.StatusOK {
		t.Fatalf("%s: answer %d %s", what, code, body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: decode %s: %v", what, body, err)
	}
	return v
}

// wantCalls checks the backend's calls of the methods named (all calls when none is).
func wantCalls(t *testing.T, f *apitest.FakeBackend, want []apitest.Call, methods ...string) {
	t.Helper()
	var got []apitest.Call
	for _, c := range f.Calls() {
		if len(methods) == 0 || contains(methods, c.Method) {
			got = append(got, c)
		}
	}
	if (len(got) != 0 || len(want) != 0) && !reflect.DeepEqual(got, want) {
		t.Errorf("backend calls:\n got %v\nwant %v", got, want)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// testCtx is a context for a call that should not hang: the test fails, rather than waits for go test's timeout.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// recv receives from ch, failing the test after waitTimeout.
func recv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// send sends v on ch, failing the test after waitTimeout.
func send[T any](t *testing.T, what string, ch chan<- T, v T) {
	t.Helper()
	select {
	case ch <- v:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for the server to take %s", what)
	}
}

func call(method string, args ...any) apitest.Call { return apitest.Call{Method: method, Args: args} }
