package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
	utilsexec "k8s.io/utils/exec"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/server"
)

// The plain fakeBackend knows no container: it has no streams.

func (f *fakeBackend) CheckExec(_ context.Context, id string) error {
	return fmt.Errorf("container %s: %w", id, server.ErrNotFound)
}

func (f *fakeBackend) Exec(context.Context, string, *protocol.ExecRequest, protocol.ExecStreams) (int, error) {
	return -1, fmt.Errorf("the fake backend: %w", server.ErrUnimplemented)
}

func (f *fakeBackend) CheckAttach(ctx context.Context, id string) error { return f.CheckExec(ctx, id) }

func (f *fakeBackend) Attach(ctx context.Context, id string, _ bool, _ protocol.ExecStreams) error {
	return f.CheckExec(ctx, id)
}

func (f *fakeBackend) CheckPortForward(_ context.Context, id string) error {
	return fmt.Errorf("sandbox %s: %w", id, server.ErrNotFound)
}

func (f *fakeBackend) DialPort(ctx context.Context, id string, _ int32) (net.Conn, error) {
	return nil, f.CheckPortForward(ctx, id)
}

// streamFake is a Backend whose containers run a scripted command: exec
// calls run(), with the streams.
type streamFake struct {
	*fakeBackend
	mu         sync.Mutex
	containers map[string]string // ID → state: "running", "exited"
	sandboxes  map[string]string // ID → the address DialPort connects to
	dialed     []int32
	execs      []protocol.ExecRequest
	attachable bool
	// run is what an exec (or attach, with nil args) does.
	run func(ctx context.Context, args []string, s protocol.ExecStreams) (int, error)
}

func (f *streamFake) CheckExec(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch st, ok := f.containers[id]; {
	case !ok:
		return fmt.Errorf("container %s: %w", id, server.ErrNotFound)
	case st != "running":
		return fmt.Errorf("container %s is %s: %w", id, st, protocol.ErrNotRunning)
	}
	return nil
}

func (f *streamFake) Exec(ctx context.Context, id string, req *protocol.ExecRequest, s protocol.ExecStreams) (int, error) {
	if err := f.CheckExec(ctx, id); err != nil {
		return -1, err
	}
	f.mu.Lock()
	f.execs = append(f.execs, *req)
	f.mu.Unlock()
	return f.run(ctx, req.Args, s)
}

func (f *streamFake) CheckAttach(ctx context.Context, id string) error {
	if err := f.CheckExec(ctx, id); err != nil {
		return err
	}
	if !f.attachable {
		return fmt.Errorf("attach to %s: %w", id, server.ErrUnimplemented)
	}
	return nil
}

func (f *streamFake) Attach(ctx context.Context, id string, _ bool, s protocol.ExecStreams) error {
	if err := f.CheckAttach(ctx, id); err != nil {
		return err
	}
	_, err := f.run(ctx, nil, s)
	return err
}

func (f *streamFake) CheckPortForward(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sandboxes[id]; !ok {
		return fmt.Errorf("sandbox %s: %w", id, server.ErrNotFound)
	}
	return nil
}

func (f *streamFake) DialPort(ctx context.Context, id string, port int32) (net.Conn, error) {
	if err := f.CheckPortForward(ctx, id); err != nil {
		return nil, err
	}
	f.mu.Lock()
	addr := f.sandboxes[id]
	f.dialed = append(f.dialed, port)
	f.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

type streamFixture struct {
	f   *streamFake
	srv *server.Server
	rt  internalapi.RuntimeService
	ctx context.Context
}

// serveStreams serves f's CRI on a temporary socket and, unless off, its
// streams on 127.0.0.1:0; stop stops the server (also done at the end).
func serveStreams(t *testing.T, f *streamFake, off bool) (*streamFixture, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := api.ListenUnix(sock, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	s := server.New(f, "v-test", logr.Discard())
	if !off {
		sl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ServeStreams(sl, server.StreamOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.Stop(5 * time.Second)
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	rt, err := remote.NewRemoteRuntimeService(ctx, "unix://"+sock, 10*time.Second, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(ctx) })
	return &streamFixture{f: f, srv: s, rt: rt, ctx: ctx}, stop
}

func newStreamFake() *streamFake {
	return &streamFake{
		fakeBackend: newFake(),
		containers:  map[string]string{"c1": "running", "c2": "exited"},
		sandboxes:   map[string]string{},
	}
}

// echo runs like busybox would run `echo -n WORDS` and `sh -c 'echo X >&2; exit N'`.
func echo(_ context.Context, args []string, s protocol.ExecStreams) (int, error) {
	switch args[0] {
	case "echo":
		fmt.Fprint(s.Stdout, strings.Join(args[2:], " "))
		return 0, nil
	case "fail":
		fmt.Fprint(s.Stderr, "oops\n")
		return 3, nil
	}
	return 127, nil
}

// TestExecSync: the output and exit code as the command gave them; a timeout
// ends the command (its context) and fails with DeadlineExceeded, which
// cri-client turns into its ErrCommandTimedOut; codes for unknown, stopped and
// malformed requests.
func TestExecSync(t *testing.T) {
	f := newStreamFake()
	killed := make(chan error, 1)
	f.run = func(ctx context.Context, args []string, s protocol.ExecStreams) (int, error) {
		if args[0] == "sleep" {
			<-ctx.Done() // the runtime kills the process when the context ends
			killed <- ctx.Err()
			return -1, errors.New("exec stream: use of closed network connection")
		}
		return echo(ctx, args, s)
	}
	fx, _ := serveStreams(t, f, false)

	stdout, stderr, err := fx.rt.ExecSync(fx.ctx, "c1", []string{"echo", "-n", "hello"}, 5*time.Second)
	if err != nil || string(stdout) != "hello" || len(stderr) != 0 {
		t.Errorf("ExecSync echo = %q, %q, %v; want \"hello\", \"\", nil", stdout, stderr, err)
	}
	stdout, stderr, err = fx.rt.ExecSync(fx.ctx, "c1", []string{"fail"}, 0)
	var ce utilsexec.CodeExitError
	if !errors.As(err, &ce) || ce.Code != 3 || len(stdout) != 0 || string(stderr) != "oops\n" {
		t.Errorf("ExecSync fail = %q, %q, %v; want exit code 3 and stderr \"oops\\n\"", stdout, stderr, err)
	}

	start := time.Now()
	_, _, err = fx.rt.ExecSync(fx.ctx, "c1", []string{"sleep", "60"}, time.Second)
	if !errors.Is(err, remote.ErrCommandTimedOut) {
		t.Errorf("ExecSync sleep with a 1s timeout: %v, want cri-client's ErrCommandTimedOut (from DeadlineExceeded)", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the timed-out ExecSync took %v", d)
	}
	select {
	case err := <-killed:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the exec's context ended with %v, want its deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the exec's context did not end at the timeout")
	}

	_, _, err = fx.rt.ExecSync(fx.ctx, "nope", []string{"true"}, time.Second)
	wantCode(t, "ExecSync in an unknown container", err, codes.NotFound)
	_, _, err = fx.rt.ExecSync(fx.ctx, "c2", []string{"true"}, time.Second)
	wantCode(t, "ExecSync in an exited container", err, codes.FailedPrecondition)
	_, _, err = fx.rt.ExecSync(fx.ctx, "c1", nil, time.Second)
	wantCode(t, "ExecSync without a command", err, codes.InvalidArgument)
}

// TestExecSyncOutputCap: output past 16 MiB per stream is dropped without
// failing the command.
func TestExecSyncOutputCap(t *testing.T) {
	f := newStreamFake()
	f.run = func(_ context.Context, _ []string, s protocol.ExecStreams) (int, error) {
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for range 17 {
			if _, err := s.Stdout.Write(chunk); err != nil {
				return -1, err
			}
		}
		fmt.Fprint(s.Stderr, "done")
		return 0, nil
	}
	fx, _ := serveStreams(t, f, false)
	// cri-client receives 16 MiB messages at most (a response with 16 MiB of
	// stdout is just over): ask with a plain gRPC client that takes more.
	resp, err := fx.srv.ExecSync(fx.ctx, &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"yes"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Stdout) != server.MaxExecSyncOutput || string(resp.Stderr) != "done" || resp.ExitCode != 0 {
		t.Errorf("ExecSync of 17 MiB: %d bytes of stdout, stderr %q, exit %d; want %d, \"done\", 0",
			len(resp.Stdout), resp.Stderr, resp.ExitCode, server.MaxExecSyncOutput)
	}
}

func execURL(t *testing.T, fx *streamFixture, req *runtimeapi.ExecRequest) *url.URL {
	t.Helper()
	resp, err := fx.rt.Exec(fx.ctx, req)
	if err != nil {
		t.Fatalf("Exec %v: %v", req.Cmd, err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "http" || !strings.HasPrefix(u.Host, "127.0.0.1:") || strings.HasSuffix(u.Host, ":0") {
		t.Errorf("exec URL %s: want http on 127.0.0.1 and the port it listens on", u)
	}
	return u
}

// TestStreamingExec: Exec's URL through client-go's remotecommand (as crictl
// and kubelet use it): exact output, the exit code, tty with stdin and resize.
func TestStreamingExec(t *testing.T) {
	f := newStreamFake()
	sizes := make(chan [2]uint16, 10)
	f.run = func(ctx context.Context, args []string, s protocol.ExecStreams) (int, error) {
		if args[0] != "cat" {
			return echo(ctx, args, s)
		}
		if s.Resize != nil { // the first size comes before the input: a shell would wait for it too
			select {
			case sz := <-s.Resize:
				sizes <- sz
			case <-ctx.Done():
				return -1, ctx.Err()
			}
		}
		_, err := io.Copy(s.Stdout, s.Stdin)
		return 0, err
	}
	fx, _ := serveStreams(t, f, false)
	u := execURL(t, fx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo", "-n", "hello"}, Stdout: true, Stderr: true})
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := ex.StreamWithContext(fx.ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut}); err != nil {
		t.Fatalf("exec echo: %v", err)
	}
	if out.String() != "hello" || errOut.Len() != 0 {
		t.Errorf("exec echo: stdout %q, stderr %q; want \"hello\", \"\"", out.String(), errOut.String())
	}

	u = execURL(t, fx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"fail"}, Stdout: true, Stderr: true})
	ex, err = remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = ex.StreamWithContext(fx.ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	var ce utilexec.CodeExitError
	if !errors.As(err, &ce) || ce.Code != 3 || errOut.String() != "oops\n" {
		t.Errorf("exec fail: %v, stderr %q; want exit code 3 and \"oops\\n\"", err, errOut.String())
	}

	u = execURL(t, fx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true, Tty: true})
	ex, err = remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	queue := sizeQueue(make(chan *remotecommand.TerminalSize, 1))
	queue <- &remotecommand.TerminalSize{Width: 120, Height: 40}
	err = ex.StreamWithContext(fx.ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("typed\n"), Stdout: &out, Tty: true, TerminalSizeQueue: queue})
	close(queue)
	if err != nil || out.String() != "typed\n" {
		t.Errorf("exec cat with a tty: %v, stdout %q; want \"typed\\n\"", err, out.String())
	}
	select {
	case sz := <-sizes:
		if sz != [2]uint16{120, 40} {
			t.Errorf("terminal size %v, want 120x40", sz)
		}
	case <-time.After(10 * time.Second):
		t.Error("the terminal size did not reach the exec")
	}
	f.mu.Lock()
	if n := len(f.execs); n != 3 || !f.execs[2].Tty || f.execs[0].Tty {
		t.Errorf("execs %+v: want 3, the last with a tty", f.execs)
	}
	f.mu.Unlock()

	_, err = fx.rt.Exec(fx.ctx, &runtimeapi.ExecRequest{ContainerId: "c2", Cmd: []string{"sh"}, Stdout: true})
	wantCode(t, "Exec in an exited container", err, codes.FailedPrecondition)
	_, err = fx.rt.Exec(fx.ctx, &runtimeapi.ExecRequest{ContainerId: "nope", Cmd: []string{"sh"}, Stdout: true})
	wantCode(t, "Exec in an unknown container", err, codes.NotFound)
	_, err = fx.rt.Exec(fx.ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh"}, Stdout: true, Stderr: true, Tty: true})
	wantCode(t, "Exec with tty and stderr", err, codes.InvalidArgument)
}

type sizeQueue chan *remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize { return <-q }

// TestStreamingAttach: Unimplemented while the backend cannot attach; then
// the URL connects the streams.
func TestStreamingAttach(t *testing.T) {
	f := newStreamFake()
	f.run = func(_ context.Context, _ []string, s protocol.ExecStreams) (int, error) {
		_, err := io.Copy(s.Stdout, s.Stdin)
		return 0, err
	}
	fx, _ := serveStreams(t, f, false)
	_, err := fx.rt.Attach(fx.ctx, &runtimeapi.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true})
	wantCode(t, "Attach without the monitor's attach", err, codes.Unimplemented)
	f.mu.Lock()
	f.attachable = true
	f.mu.Unlock()
	_, err = fx.rt.Attach(fx.ctx, &runtimeapi.AttachRequest{ContainerId: "c2", Stdin: true, Stdout: true})
	wantCode(t, "Attach to an exited container", err, codes.FailedPrecondition)
	resp, err := fx.rt.Attach(fx.ctx, &runtimeapi.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ex.StreamWithContext(fx.ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("hello\n"), Stdout: &out, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hello\n" {
		t.Errorf("attach: stdout %q, want \"hello\\n\"", out.String())
	}
}

// TestStreamingPortForward: client-go's port forwarder (kubectl's, crictl's)
// reaches a web server through DialPort, with the port asked for.
func TestStreamingPortForward(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the pod, %s", r.URL.Path)
	}))
	defer web.Close()
	f := newStreamFake()
	f.sandboxes["sb1"] = web.Listener.Addr().String()
	fx, _ := serveStreams(t, f, false)

	_, err := fx.rt.PortForward(fx.ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "nope"})
	wantCode(t, "PortForward to an unknown sandbox", err, codes.NotFound)
	resp, err := fx.rt.PortForward(fx.ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "sb1"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:80"}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	forwarded := make(chan error, 1)
	go func() { forwarded <- pf.ForwardPorts() }()
	defer func() {
		close(stop)
		if err := <-forwarded; err != nil {
			t.Errorf("ForwardPorts: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-forwarded:
		t.Fatalf("ForwardPorts: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the port forward did not become ready")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/one", "/two"} {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
		r, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", ports[0].Local, path))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil || string(body) != "hello from the pod, "+path {
			t.Errorf("GET %s through the port forward: %q, %v", path, body, err)
		}
	}
	f.mu.Lock()
	if len(f.dialed) != 2 || f.dialed[0] != 80 {
		t.Errorf("DialPort ports %v, want [80 80]", f.dialed)
	}
	f.mu.Unlock()
}

// TestStreamingOffAndStop: without a streaming server the RPCs say
// Unimplemented; Stop ends a running exec (its context) and the listener.
func TestStreamingOffAndStop(t *testing.T) {
	fx, _ := serveStreams(t, newStreamFake(), true)
	_, err := fx.rt.Exec(fx.ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh"}, Stdout: true})
	wantCode(t, "Exec with streaming off", err, codes.Unimplemented)
	_, err = fx.rt.PortForward(fx.ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "sb1"})
	wantCode(t, "PortForward with streaming off", err, codes.Unimplemented)

	f := newStreamFake()
	started, ended := make(chan struct{}), make(chan error, 1)
	f.run = func(ctx context.Context, _ []string, _ protocol.ExecStreams) (int, error) {
		close(started)
		<-ctx.Done()
		ended <- ctx.Err()
		return -1, ctx.Err()
	}
	fx, stop := serveStreams(t, f, false)
	u := execURL(t, fx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sleep"}, Stdout: true})
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	streamed := make(chan error, 1)
	go func() { streamed <- ex.StreamWithContext(fx.ctx, remotecommand.StreamOptions{Stdout: io.Discard}) }()
	select {
	case <-started:
	case err := <-streamed:
		t.Fatalf("exec ended before it started: %v", err)
	}
	stop()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the exec's context ended with %v, want Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end the running exec")
	}
	if err := <-streamed; err == nil {
		t.Error("the client's exec stream ended without an error when the server stopped")
	}
	if _, err := net.DialTimeout("tcp", u.Host, 5*time.Second); err == nil {
		t.Errorf("the streaming server still accepts connections on %s after Stop", u.Host)
	}
}

// TestStreamingExecClientGone: an exec whose client went away ends (its
// context, so the runtime kills it) at its next output, rather than running on
// with nobody to read it.
func TestStreamingExecClientGone(t *testing.T) {
	f := newStreamFake()
	started, ended := make(chan struct{}), make(chan error, 1)
	f.run = func(ctx context.Context, _ []string, s protocol.ExecStreams) (int, error) {
		close(started)
		tick := time.NewTicker(20 * time.Millisecond) // a command that prints now and then
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				ended <- ctx.Err()
				return -1, ctx.Err()
			case <-tick.C:
				_, _ = s.Stdout.Write([]byte("tick\n"))
			}
		}
	}
	fx, _ := serveStreams(t, f, false)
	u := execURL(t, fx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"ticker"}, Stdout: true})
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	cctx, leave := context.WithCancel(fx.ctx)
	streamed := make(chan error, 1)
	go func() { streamed <- ex.StreamWithContext(cctx, remotecommand.StreamOptions{Stdout: io.Discard}) }()
	select {
	case <-started:
	case err := <-streamed:
		t.Fatalf("exec ended before it started: %v", err)
	}
	leave()
	<-streamed
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the exec's context ended with %v, want Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the exec went on after its client left")
	}
}
