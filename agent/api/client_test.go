package api

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// TestClientErrors: no one listening is ErrUnreachable (agentctl then works
// without agentd); a connection that breaks before the answer is not, so that an
// import agentd was carrying out when it died is not done a second time
// elsewhere.
func TestClientErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	c := NewClient(sock)
	_, err := c.ImportImage(context.Background(), "/nonexistent.tar")
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("no socket: %v, want ErrUnreachable", err)
	}

	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 512)
			_, _ = conn.Read(buf) // the request arrives; agentd dies before it answers
			conn.Close()
		}
	}()
	_, err = c.ImportImage(context.Background(), "/nonexistent.tar")
	if errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrConnectionLost) {
		t.Errorf("connection closed before the answer: %v, want ErrConnectionLost", err)
	}
}

// TestClientStatusErrors: an error answer that is a Status becomes its class with its message; one that is not
// (a proxy's or a mux's plain text) is none of the classes and says what agentd answered.
func TestClientStatusErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		code int
		body string
	}
	var mu sync.Mutex // guards answer
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(answer.code)
		_, _ = io.WriteString(w, answer.body)
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	c := NewClient(sock)
	for _, tc := range []struct {
		code  int
		body  string
		class error
		msg   string
	}{
		{404, `{"kind":"Status","status":"Failure","message":"pods \"web\" not found","code":404}`, ErrNotFound, `not found: pods "web" not found`},
		{503, `{"kind":"Status","status":"Failure","message":"etcd is down","code":503}`, ErrUnavailable, "unavailable: etcd is down"},
		{500, `{"kind":"Status","status":"Failure","message":"disk full","code":500}`, nil, "disk full"},
		{404, "404 page not found\n", nil, "agentd answered 404 Not Found: 404 page not found"},
		{502, `{"kind":"Status"}`, nil, `agentd answered 502 Bad Gateway: {"kind":"Status"}`},
	} {
		mu.Lock()
		answer.code, answer.body = tc.code, tc.body
		mu.Unlock()
		_, err := c.Pods(context.Background())
		for _, class := range []error{ErrNotFound, ErrBadRequest, ErrConflict, ErrForbidden, ErrUnavailable} {
			if is := errors.Is(err, class); is != (class == tc.class) {
				t.Errorf("%d %s: error %v: errors.Is(%v) = %v", tc.code, tc.body, err, class, is)
			}
		}
		if err == nil || err.Error() != tc.msg {
			t.Errorf("%d %s: error %v, want %q", tc.code, tc.body, err, tc.msg)
		}
	}
}

// TestClientExecUnreachable: exec, which dials on its own, reports a missing agentd as the other calls do.
func TestClientExecUnreachable(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "agent.sock"))
	code, err := c.Exec(context.Background(), "default", "web", "", &protocol.ExecRequest{Args: []string{"ls"}}, Streams{})
	if code != -1 || !errors.Is(err, ErrUnreachable) {
		t.Errorf("Exec without agentd = %d, %v; want -1, ErrUnreachable", code, err)
	}
}
