package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/api/apitest"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

func setAttach(f *apitest.FakeBackend, fn func(ctx context.Context, s api.Streams) error) {
	f.Lock()
	defer f.Unlock()
	f.AttachFunc = fn
}

// TestAttach: stdin reaches the container, its output the client, and the attach
// ends when the backend's does (the container's run ended).
func TestAttach(t *testing.T) {
	ts := newTestServer(t)
	setAttach(ts.f, func(_ context.Context, s api.Streams) error {
		_, err := io.Copy(s.Stdout, s.Stdin) // a container running cat, until stdin ends
		fmt.Fprint(s.Stderr, "bye\n")
		return err
	})
	var stdout, stderr testutil.SyncBuffer
	err := ts.c.Attach(testCtx(t), "default", "web", "app", api.Streams{Stdin: strings.NewReader("hello\n"), Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "hello\n" || stderr.String() != "bye\n" {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	wantCalls(t, ts.f, []apitest.Call{call("Attach", "default", "web", "app", true)})
}

// TestAttachWithoutStderr: a client that attaches no stderr (a terminal) gets none.
func TestAttachWithoutStderr(t *testing.T) {
	ts := newTestServer(t)
	hadStderr := make(chan bool, 1)
	setAttach(ts.f, func(_ context.Context, s api.Streams) error {
		hadStderr <- s.Stderr != nil
		return nil
	})
	if err := ts.c.Attach(testCtx(t), "default", "web", "", api.Streams{Stdout: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if recv(t, "the attach", hadStderr) {
		t.Error("the backend got a stderr the client did not attach")
	}
	wantCalls(t, ts.f, []apitest.Call{call("Attach", "default", "web", "", false)})
}

// TestAttachError: the backend's error reaches the client as it said it.
func TestAttachError(t *testing.T) {
	ts := newTestServer(t)
	setAttach(ts.f, func(context.Context, api.Streams) error {
		return fmt.Errorf("%w: container app does not keep its stdin open", api.ErrBadRequest)
	})
	err := ts.c.Attach(testCtx(t), "default", "web", "app", api.Streams{Stdin: strings.NewReader(""), Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "does not keep its stdin open") {
		t.Errorf("Attach = %v", err)
	}
}

// TestAttachDetach: the client going ends the backend's attach, and is no error.
func TestAttachDetach(t *testing.T) {
	ts := newTestServer(t)
	ended := make(chan error, 1)
	setAttach(ts.f, func(ctx context.Context, s api.Streams) error {
		fmt.Fprint(s.Stdout, "attached\n")
		<-ctx.Done()
		ended <- ctx.Err()
		return nil
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	out := &notifyWriter{seen: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- ts.c.Attach(ctx, "default", "web", "", api.Streams{Stdout: out}) }()
	select {
	case <-out.seen:
	case <-time.After(20 * time.Second):
		t.Fatal("no output")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Attach after detach = %v", err)
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("backend's context: %v", err)
	}
}

type notifyWriter struct {
	seen chan struct{}
	once bool
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	if !w.once {
		w.once = true
		close(w.seen)
	}
	return len(p), nil
}
