package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// StreamBackend is what ExecSync and the streaming RPCs (Exec, Attach,
// PortForward) ask of the agent. Exec and Attach are the exceptions to
// Backend's "every method returns promptly": they last as long as the
// command or the attach, and end with ctx.
type StreamBackend interface {
	// CheckExec says whether container id runs, so that a command can be run
	// in it: nil if it does, an error wrapping ErrNotFound for an unknown ID,
	// one wrapping ErrFailedPrecondition (or protocol.ErrNotRunning) for a
	// container that does not run.
	CheckExec(ctx context.Context, id string) error
	// Exec runs req in container id with the streams s until it exits, and
	// returns its exit code; when ctx ends first, the process is killed and
	// Exec returns an error. Errors are CheckExec's and the runtime's.
	Exec(ctx context.Context, id string, req *protocol.ExecRequest, s protocol.ExecStreams) (int, error)

	// CheckAttach is CheckExec for Attach; it also says (ErrUnimplemented)
	// when the container's monitor cannot attach.
	CheckAttach(ctx context.Context, id string) error
	// Attach connects s to the main process of container id until ctx ends or
	// the process exits (stdin is s.Stdin only when tty or stdin was asked).
	Attach(ctx context.Context, id string, tty bool, s protocol.ExecStreams) error

	// CheckPortForward says whether sandbox id is there and ready (errors as
	// CheckExec's).
	CheckPortForward(ctx context.Context, id string) error
	// DialPort connects to TCP port on the loopback of sandbox id's network
	// namespace (the host's for a host-network sandbox).
	DialPort(ctx context.Context, id string, port int32) (net.Conn, error)
}

// StreamOptions are the streaming server's settings.
type StreamOptions struct {
	// IdleTimeout ends a stream nothing went through for this long (0: 4h, containerd's and kubelet's).
	IdleTimeout time.Duration
	// CreationTimeout bounds how long a client takes to open its streams (0: 30s).
	CreationTimeout time.Duration
}

// streams is the streaming server: its HTTP server on its listener, and what
// it runs (execs, attaches, port forwards) so that Stop can end them.
type streams struct {
	srv    streaming.Server
	http   *http.Server
	served chan struct{}
	ctx    context.Context // cancelled by Stop: ends every exec, attach and port forward
	cancel context.CancelFunc
	active sync.WaitGroup
	log    logr.Logger
}

// ServeStreams serves the streaming endpoints of Exec, Attach and PortForward
// on l, an HTTP listener (the URLs the RPCs hand out name l's address, so a
// URL is only ever handed out for a server that listens); Stop ends it and
// closes l. Without it those RPCs answer Unimplemented. Call it before Serve.
//
// The streaming server has no authentication of its own: a URL's token (random,
// used once, valid for a minute) is the only credential, so l should be on
// loopback, where only this host's processes reach it, and kubelet proxies the
// streams from there (as with containerd's default stream server).
func (s *Server) ServeStreams(l net.Listener, opts StreamOptions) error {
	if s.streams != nil {
		return errors.New("the CRI streaming server is already serving")
	}
	cfg := streaming.DefaultConfig
	cfg.Addr = l.Addr().String()
	cfg.BaseURL = &url.URL{Scheme: "http", Host: l.Addr().String()}
	if opts.IdleTimeout > 0 {
		cfg.StreamIdleTimeout = opts.IdleTimeout
	}
	if opts.CreationTimeout > 0 {
		cfg.StreamCreationTimeout = opts.CreationTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &streams{served: make(chan struct{}), ctx: ctx, cancel: cancel, log: s.log.WithName("streaming")}
	srv, err := streaming.NewServer(cfg, &streamRuntime{b: s.b, st: st})
	if err != nil {
		cancel()
		return fmt.Errorf("CRI streaming server: %w", err)
	}
	st.srv = srv
	st.http = &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.streams = st
	go func() {
		defer close(st.served)
		if err := st.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			st.log.Error(err, "CRI streaming server stopped", "address", l.Addr().String())
		}
	}()
	return nil
}

// stop ends the streaming server: no new connection, every running exec,
// attach and port forward ended (an exec's process is killed), and waits up to
// grace for them.
func (st *streams) stop(grace time.Duration) {
	st.cancel()
	_ = st.http.Close() // the listener and the connections not yet upgraded to streams
	<-st.served
	done := make(chan struct{})
	go func() {
		st.active.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		st.log.Info("Streams still running after the streaming server stopped", "grace", grace)
	}
}

// begin registers a stream operation; it returns ctx ended when either the
// operation's or the server's context ends, and a function to call when the
// operation is done.
func (st *streams) begin(ctx context.Context) (context.Context, func()) {
	st.active.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(st.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		st.active.Done()
	}
}

func (s *Server) streamsOn() error {
	if s.streams == nil {
		return fmt.Errorf("%w: the streaming server is off (cri.stream-address is empty)", ErrUnimplemented)
	}
	return nil
}

// Exec hands out the URL of an exec in a running container.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if err := s.streamsOn(); err != nil {
		return nil, err
	}
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: Exec: no container_id", ErrInvalidArgument)
	}
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("%w: Exec in container %s: no cmd", ErrInvalidArgument, req.GetContainerId())
	}
	if err := s.b.CheckExec(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.streams.srv.GetExec(req)
}

// Attach hands out the URL of an attach to a running container.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if err := s.streamsOn(); err != nil {
		return nil, err
	}
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: Attach: no container_id", ErrInvalidArgument)
	}
	if err := s.b.CheckAttach(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.streams.srv.GetAttach(req)
}

// PortForward hands out the URL of port forwards into a ready sandbox.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if err := s.streamsOn(); err != nil {
		return nil, err
	}
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("%w: PortForward: no pod_sandbox_id", ErrInvalidArgument)
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("%w: PortForward to sandbox %s: port %d out of range", ErrInvalidArgument, req.GetPodSandboxId(), p)
		}
	}
	if err := s.b.CheckPortForward(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return s.streams.srv.GetPortForward(req)
}

// streamRuntime runs the streaming server's requests on the Backend.
type streamRuntime struct {
	b  Backend
	st *streams
}

var _ streaming.Runtime = (*streamRuntime)(nil)

// Exec implements streaming.Runtime: a non-zero exit is an
// exec.CodeExitError, which the server reports to the client as the exit
// code (kubectl exec exits with it).
//
// The HTTP request's context does not end when the client goes (the
// connection is hijacked), so a client that went away is noticed when a write
// to it fails: the exec's context ends then, and the process is killed, as a
// shell's child is by SIGPIPE.
func (r *streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, done := r.st.begin(ctx)
	defer done()
	ctx, clientGone := context.WithCancel(ctx)
	defer clientGone()
	if out != nil {
		out = &cancelOnError{WriteCloser: out, cancel: clientGone}
	}
	if errw != nil {
		errw = &cancelOnError{WriteCloser: errw, cancel: clientGone}
	}
	code, err := r.b.Exec(ctx, id, &protocol.ExecRequest{Args: cmd, Tty: tty}, execStreams(ctx, in, out, errw, resize))
	if err != nil {
		r.st.log.V(1).Info("Exec failed", "container", id, "error", err.Error())
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command %s exited with %d", quoteCmd(cmd), code), Code: code}
	}
	return nil
}

// cancelOnError calls cancel when a write fails: the client is gone.
type cancelOnError struct {
	io.WriteCloser
	cancel context.CancelFunc
}

func (w *cancelOnError) Write(p []byte) (int, error) {
	n, err := w.WriteCloser.Write(p)
	if err != nil {
		w.cancel()
	}
	return n, err
}

// Attach implements streaming.Runtime.
func (r *streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, done := r.st.begin(ctx)
	defer done()
	err := r.b.Attach(ctx, id, tty, execStreams(ctx, in, out, errw, resize))
	if err != nil {
		r.st.log.V(1).Info("Attach failed", "container", id, "error", err.Error())
	}
	return err
}

// PortForward implements streaming.Runtime: it copies between stream and a
// connection to port on the sandbox's loopback until the container's side
// ends, the client's side fails or the server stops. The client's end of
// input (its half-close) is passed on as a half-close, so a request-response
// protocol still gets its response.
func (r *streamRuntime) PortForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	ctx, done := r.st.begin(ctx)
	defer done()
	conn, err := r.b.DialPort(ctx, id, port)
	if err != nil {
		r.st.log.V(1).Info("Port forward failed", "sandbox", id, "port", port, "error", err.Error())
		return fmt.Errorf("port forward to port %d of sandbox %s: %w", port, id, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	fromPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(stream, conn)
		fromPod <- err
	}()
	toPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		if err == nil {
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				err = cw.CloseWrite()
			}
		}
		toPod <- err
	}()
	select {
	case err = <-fromPod:
	case err = <-toPod:
		if err == nil {
			err = <-fromPod // the client is done sending; the pod's answer still comes
		}
	}
	if ctx.Err() != nil {
		return nil // the server stops: not the port forward's failure
	}
	if err != nil && !isClosed(err) {
		return fmt.Errorf("port forward to port %d of sandbox %s: %w", port, id, err)
	}
	return nil
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) || strings.Contains(err.Error(), "connection reset by peer")
}

// execStreams adapts the streaming server's streams to the monitor's: a nil
// stream stays nil (an interface holding a nil pointer would not), and the
// terminal sizes go on as (width, height) until resize closes or ctx ends.
func execStreams(ctx context.Context, in io.Reader, out, errw io.WriteCloser, resize <-chan remotecommand.TerminalSize) protocol.ExecStreams {
	var s protocol.ExecStreams
	if in != nil {
		s.Stdin = in
	}
	if out != nil {
		s.Stdout = out
	}
	if errw != nil {
		s.Stderr = errw
	}
	if resize != nil {
		sizes := make(chan [2]uint16)
		go func() {
			defer close(sizes)
			for {
				select {
				case <-ctx.Done():
					return
				case sz, ok := <-resize:
					if !ok {
						return
					}
					select {
					case sizes <- [2]uint16{sz.Width, sz.Height}:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
		s.Resize = sizes
	}
	return s
}
