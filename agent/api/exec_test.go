package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/api/apitest"
	"github.com/agentd-project/agentd/agent/internal/testutil"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func setExec(f *apitest.FakeBackend, fn func(ctx context.Context, req *protocol.ExecRequest, s api.Streams) (int, error)) {
	f.Lock()
	defer f.Unlock()
	f.ExecFunc = fn
}

// TestExec: the command's stdout, stderr and exit code reach the client, and the request reaches the backend.
func TestExec(t *testing.T) {
	ts := newTestServer(t)
	hadStdin := make(chan bool, 1)
	setExec(ts.f, func(_ context.Context, _ *protocol.ExecRequest, s api.Streams) (int, error) {
		hadStdin <- s.Stdin != nil
		fmt.Fprint(s.Stdout, "to stdout\n")
		fmt.Fprint(s.Stderr, "to stderr\n")
		return 7, nil
	})
	var stdout, stderr testutil.SyncBuffer
	req := &protocol.ExecRequest{Args: []string{"sh", "-c", "echo 'a b'; exit 7"}, Tty: true, Width: 120, Height: 40}
	code, err := ts.c.Exec(testCtx(t), "kube-system", "web", "app", req, api.Streams{Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 7 {
		t.Fatalf("Exec = %d, %v; want 7", code, err)
	}
	if stdout.String() != "to stdout\n" || stderr.String() != "to stderr\n" {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	if recv(t, "the exec", hadStdin) {
		t.Error("the backend got a stdin although the client has none")
	}
	wantCalls(t, ts.f, []apitest.Call{call("Exec", "kube-system", "web", "app", *req)})
}

// TestExecStdin: stdin is passed through and its end reaches the command as EOF.
func TestExecStdin(t *testing.T) {
	ts := newTestServer(t)
	setExec(ts.f, func(_ context.Context, _ *protocol.ExecRequest, s api.Streams) (int, error) {
		n, err := io.Copy(s.Stdout, s.Stdin) // until EOF
		fmt.Fprintf(s.Stderr, "%d bytes, %v", n, err)
		return 0, nil
	})
	input := strings.Repeat("a line of input\n", 10000) // several frames
	var stdout, stderr testutil.SyncBuffer
	code, err := ts.c.Exec(testCtx(t), "default", "web", "", &protocol.ExecRequest{Args: []string{"cat"}},
		api.Streams{Stdin: strings.NewReader(input), Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 0 {
		t.Fatalf("Exec = %d, %v; want 0", code, err)
	}
	if stdout.String() != input || stderr.String() != fmt.Sprintf("%d bytes, <nil>", len(input)) {
		t.Errorf("cat echoed %d bytes (stderr %q), want the %d of its input", len(stdout.String()), stderr.String(), len(input))
	}
}

// TestExecLargeOutput: a write larger than a frame is split into frames and arrives whole.
func TestExecLargeOutput(t *testing.T) {
	ts := newTestServer(t)
	out := bytes.Repeat([]byte("0123456789abcdef"), protocol.MaxFrame/16+1)
	setExec(ts.f, func(_ context.Context, _ *protocol.ExecRequest, s api.Streams) (int, error) {
		if n, err := s.Stdout.Write(out); n != len(out) || err != nil {
			return -1, fmt.Errorf("write: %d, %w", n, err)
		}
		return 0, nil
	})
	var stdout testutil.SyncBuffer
	code, err := ts.c.Exec(testCtx(t), "default", "web", "", &protocol.ExecRequest{Args: []string{"yes"}}, api.Streams{Stdout: &stdout})
	if err != nil || code != 0 || stdout.String() != string(out) {
		t.Errorf("Exec = %d, %v with %d bytes of stdout, want 0 with %d bytes", code, err, len(stdout.String()), len(out))
	}
}

// TestExecResize: the terminal's size changes reach the command.
func TestExecResize(t *testing.T) {
	ts := newTestServer(t)
	setExec(ts.f, func(_ context.Context, _ *protocol.ExecRequest, s api.Streams) (int, error) {
		for i := 0; i < 2; i++ {
			sz, ok := <-s.Resize
			if !ok {
				return -1, errors.New("resize channel closed")
			}
			fmt.Fprintf(s.Stdout, "%dx%d\n", sz[0], sz[1])
		}
		return 0, nil
	})
	resize := make(chan [2]uint16)
	defer close(resize)
	var stdout testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		code, err := ts.c.Exec(testCtx(t), "default", "web", "", &protocol.ExecRequest{Args: []string{"sh"}, Tty: true, Width: 80, Height: 24},
			api.Streams{Stdout: &stdout, Resize: resize})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d", code)
		}
		done <- err
	}()
	send(t, "a resize", resize, [2]uint16{100, 30})
	send(t, "a resize", resize, [2]uint16{132, 43})
	if err := recv(t, "the exec to end", done); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "100x30\n132x43\n" {
		t.Errorf("the command saw sizes %q, want 100x30 then 132x43", stdout.String())
	}
}

// TestExecErrors: a request without a command or without the upgrade is refused before it reaches the backend; a
// backend that fails ends the stream with its message.
func TestExecErrors(t *testing.T) {
	ts := newTestServer(t)
	ctx := testCtx(t)
	_, err := ts.c.Exec(ctx, "default", "web", "", &protocol.ExecRequest{}, api.Streams{})
	if !errors.Is(err, api.ErrBadRequest) || api.CleanMessage(err) != "exec needs a command" {
		t.Errorf("Exec without a command: %v, want ErrBadRequest: exec needs a command", err)
	}
	code, body := ts.do(t, http.MethodPost, "/api/v1/namespaces/default/pods/web/exec?command=ls", "", "")
	wantFailure(t, "exec without Upgrade", code, body, http.StatusBadRequest, "BadRequest", "exec needs Upgrade: "+api.UpgradeExec)
	code, body = ts.do(t, http.MethodGet, "/api/v1/namespaces/default/pods/web/exec?command=ls", "", "")
	if code != http.StatusMethodNotAllowed {
		t.Errorf("GET exec: %d %s, want 405", code, body)
	}
	wantCalls(t, ts.f, nil, "Exec")

	ts.f.Lock()
	ts.f.Err["Exec"] = fmt.Errorf("%w: cannot exec into a container that is not running", api.ErrBadRequest)
	ts.f.Unlock()
	exit, err := ts.c.Exec(ctx, "default", "web", "", &protocol.ExecRequest{Args: []string{"ls"}}, api.Streams{})
	if exit != -1 || err == nil || !strings.HasSuffix(err.Error(), ": cannot exec into a container that is not running") {
		t.Errorf("Exec into a stopped container: %d, %v; want -1 and the backend's message without its class", exit, err)
	}
}

// TestExecEndsWithTheClient: a client that goes away (agentctl interrupted) ends the exec's context, so that agentd
// lets go of the exec's monitor connection and goroutines rather than keep them as long as the command runs (the
// request's context alone is not cancelled by a hijacked connection's end, by net/http's documentation).
func TestExecEndsWithTheClient(t *testing.T) {
	ts := newTestServer(t)
	started, ended := make(chan struct{}), make(chan error, 1)
	setExec(ts.f, func(ctx context.Context, _ *protocol.ExecRequest, s api.Streams) (int, error) {
		fmt.Fprint(s.Stdout, "running\n")
		close(started)
		<-ctx.Done()
		ended <- ctx.Err()
		return -1, ctx.Err()
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		_, err := ts.c.Exec(ctx, "default", "web", "", &protocol.ExecRequest{Args: []string{"sleep", "infinity"}}, api.Streams{Stdout: io.Discard})
		done <- err
	}()
	recv(t, "the exec to start", started)
	cancel()
	if err := recv(t, "the client's Exec to return", done); err == nil {
		t.Error("the client's Exec returned no error after its context was cancelled")
	}
	if err := recv(t, "the backend's exec context to end", ended); !errors.Is(err, context.Canceled) {
		t.Errorf("the backend's exec context ended with %v, want context.Canceled", err)
	}
	waitNoGoroutine(t, "api.(*Server).exec")
}

// waitNoGoroutine waits until no goroutine runs fn (part of a function's name in a stack trace).
func waitNoGoroutine(t *testing.T, fn string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte(fn)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a goroutine still runs %s:\n%s", fn, buf[:n])
		}
		<-tick.C
	}
}

// TestExecUnreadStdin: a command that ends without reading all its stdin (head -1) leaves nothing of the exec
// behind in the server, however much stdin the client had sent.
func TestExecUnreadStdin(t *testing.T) {
	ts := newTestServer(t)
	setExec(ts.f, func(_ context.Context, _ *protocol.ExecRequest, s api.Streams) (int, error) {
		_, err := io.ReadFull(s.Stdin, make([]byte, 2)) // its first line, while the client is sending more
		return 0, err
	})
	stdin := strings.NewReader(strings.Repeat("y\n", 4<<20)) // many frames
	code, err := ts.c.Exec(testCtx(t), "default", "web", "", &protocol.ExecRequest{Args: []string{"true"}},
		api.Streams{Stdin: stdin, Stdout: io.Discard})
	if err != nil || code != 0 {
		t.Fatalf("Exec = %d, %v; want 0", code, err)
	}
	waitNoGoroutine(t, "api.(*Server).exec")
}
