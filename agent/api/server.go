package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	goruntime "runtime"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/crilog"
)

// Error classes a Backend returns (errors.Is), mapped to HTTP status codes.
var (
	ErrNotFound   = errors.New("not found")
	ErrBadRequest = errors.New("bad request")
	ErrConflict   = errors.New("conflict")
	// ErrForbidden: the request needs a credential this node does not hold, or breaks the cluster's policy.
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable: a service the request needs (the cluster's etcd) cannot be reached now.
	ErrUnavailable = errors.New("unavailable")
)

// Streams are an exec's I/O.
type Streams = protocol.ExecStreams

// Backend is what the server serves. Implementations are safe for concurrent use;
// every method returns promptly except Exec, which lasts as long as the process,
// and Attach, as long as the client or the container's run.
type Backend interface {
	Pods() []corev1.Pod
	Events(uid types.UID) []corev1.Event
	// Subscribe signals (coalesced) whenever a pod changed; cancel ends it. A backend that is stopping may close
	// changed, which ends the watch.
	Subscribe() (changed <-chan struct{}, cancel func())
	Info() Info
	// ServerVersion is agentd's version and its monitor protocol, as Info has them:
	// what `agentctl version` asks for, without the rest of Info (which reads the
	// image store and takes agentd's lock).
	ServerVersion() (version, monitorProtocol string)
	Images() ([]Image, error)
	// ImportImage imports an image archive at a path on this host.
	ImportImage(ctx context.Context, path string) ([]Image, error)
	// RemoveImage removes an image, or one of its names (ErrConflict while a
	// container uses the image it would delete); PruneImages removes every
	// image no container uses and returns them.
	RemoveImage(ctx context.Context, ref string) error
	PruneImages(ctx context.Context) ([]Image, error)
	// PullImage pulls an image from its registry into the store, calling
	// progress (never concurrently) as it goes; it returns when ctx ends.
	PullImage(ctx context.Context, ref string, progress func(PullProgress)) (*PullResult, error)
	// LogFile names a container's CRI log file: a path beneath the trusted log
	// root, which the server opens without following symlinks (a pod may write there).
	LogFile(namespace, name, container string, previous bool) (root, file string, err error)
	// DeleteUnmanaged stops a pod whose monitors agentd cannot manage (an older,
	// incompatible protocol); agentd then runs the pod from its manifest.
	DeleteUnmanaged(namespace, name string) error
	Exec(ctx context.Context, namespace, name, container string, req *protocol.ExecRequest, s Streams) (int, error)
	// Attach attaches s to a running container's stdio (a nil Stdin is not
	// attached) until its run ends or ctx is done (kubectl attach).
	Attach(ctx context.Context, namespace, name, container string, s Streams) error

	// Cluster mode.
	ClusterStatus() ClusterStatus
	ClusterInit(ctx context.Context, req ClusterInitRequest) (ClusterStatus, error)
	ClusterJoin(ctx context.Context, req ClusterJoinRequest) (ClusterStatus, error)
	// ClusterLeave leaves the cluster; force leaves locally when the cluster does not accept it.
	ClusterLeave(ctx context.Context, force bool) error
	Nodes(ctx context.Context) ([]corev1.Node, error)
	// DeleteNode removes a node that is gone for good (and its etcd member and user); force removes a Ready one.
	DeleteNode(ctx context.Context, name string, force bool) error
	// ApplyDaemonSet creates or replaces the DaemonSet of a manifest.
	ApplyDaemonSet(ctx context.Context, manifest []byte) (*ApplyResult, error)
	DaemonSets(ctx context.Context) ([]appsv1.DaemonSet, error)
	DeleteDaemonSet(ctx context.Context, namespace, name string) error
	// CreateToken creates a bootstrap token for `cluster join` (its secret is shown only in the answer).
	CreateToken(ctx context.Context, req TokenRequest) (*TokenCreated, error)
	Tokens(ctx context.Context) ([]TokenInfo, error)
	DeleteToken(ctx context.Context, id string) error
	// Certs describes the cluster certificates this node holds.
	Certs() ([]CertInfo, error)
}

// Server is the API server on a Unix socket.
type Server struct {
	l   net.Listener
	srv *http.Server
	b   Backend
	log logr.Logger
}

// Listen serves b on a Unix socket at path (mode 0600; only root and agentd's own
// user may connect, checked with SO_PEERCRED). A stale socket file is replaced; a
// live one (another agentd) is an error.
func Listen(path string, b Backend, log logr.Logger) (*Server, error) {
	l, err := ListenUnix(path, log)
	if err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	s := &Server{l: l, b: b, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathVersion, s.version)
	mux.HandleFunc("GET "+PathInfo, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.b.Info()) })
	mux.HandleFunc("GET "+PathImages, s.images)
	mux.HandleFunc("POST "+PathImages+"/import", s.importImage)
	mux.HandleFunc("POST "+PathImages+"/prune", s.pruneImages)
	mux.HandleFunc("POST "+PathImages+"/pull", s.pullImage)
	mux.HandleFunc("DELETE "+PathImages, s.removeImage)
	mux.HandleFunc("GET "+PathEvents, s.events)
	mux.HandleFunc("GET "+PathPods, s.pods)
	mux.HandleFunc("GET /api/v1/namespaces/{namespace}/pods/{name}", s.pod)
	mux.HandleFunc("GET /api/v1/namespaces/{namespace}/pods/{name}/log", s.logs)
	mux.HandleFunc("DELETE /api/v1/namespaces/{namespace}/pods/{name}", s.deletePod)
	mux.HandleFunc("POST /api/v1/namespaces/{namespace}/pods/{name}/exec", s.exec)
	mux.HandleFunc("POST /api/v1/namespaces/{namespace}/pods/{name}/attach", s.attach)
	s.clusterRoutes(mux)
	s.metricsRoutes(mux)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(s.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "API server stopped")
		}
	}()
	return s, nil
}

// ListenUnix listens on a Unix socket at path that only root and agentd's own user may use: mode 0600, and every
// connection's peer credentials (SO_PEERCRED) checked at Accept, a refused one logged and closed. A stale socket
// file (an agentd that crashed) is replaced; a live one (another agentd) is an error naming it. Closing the listener
// removes the socket. agentd's CRI socket (cri/server) is served on it too.
func ListenUnix(path string, log logr.Logger) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another agentd is listening on %s", path)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return &peerCheckListener{Listener: l, log: log}, nil
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	return s.srv.Close()
}

// peerCheckListener refuses connections from users other than root and our own.
type peerCheckListener struct {
	net.Listener
	log logr.Logger
}

func (l *peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && peerAllowed(uid, uint32(os.Getuid())) {
			return c, nil
		}
		l.log.Info("Refused a connection", "socket", l.Addr().String(), "uid", uid, "error", err)
		c.Close()
	}
}

// peerAllowed says whether a peer may use the API: root, and the user agentd runs as.
func peerAllowed(peer, self uint32) bool { return peer == 0 || peer == self }

func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code, reason := statusOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(&Status{Kind: "Status", Status: "Failure", Message: CleanMessage(err), Reason: reason, Code: code})
}

// statusOf is the HTTP status code and Kubernetes reason of an error's class.
func statusOf(err error) (code int, reason string) {
	code, reason = http.StatusInternalServerError, "InternalError"
	switch {
	case errors.Is(err, ErrNotFound):
		code, reason = http.StatusNotFound, "NotFound"
	case errors.Is(err, ErrBadRequest):
		code, reason = http.StatusBadRequest, "BadRequest"
	case errors.Is(err, ErrConflict):
		code, reason = http.StatusConflict, "Conflict"
	case errors.Is(err, ErrForbidden):
		code, reason = http.StatusForbidden, "Forbidden"
	case errors.Is(err, ErrUnavailable):
		code, reason = http.StatusServiceUnavailable, "ServiceUnavailable"
	}
	return code, reason
}

// CleanMessage is an error's text without its class prefix ("not found: "): what the server sends, and what
// agentctl prints of an error the client returned.
func CleanMessage(err error) string {
	msg := err.Error()
	for _, c := range []error{ErrNotFound, ErrBadRequest, ErrConflict, ErrForbidden, ErrUnavailable} {
		if p := c.Error() + ": "; len(msg) > len(p) && msg[:len(p)] == p {
			return msg[len(p):]
		}
	}
	return msg
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	v, proto := s.b.ServerVersion()
	writeJSON(w, &Version{Version: v, MonitorProtocol: proto, GoVersion: runtimeVersion()})
}

func (s *Server) images(w http.ResponseWriter, _ *http.Request) {
	imgs, err := s.b.Images()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, &ImageList{Items: imgs})
}

func (s *Server) importImage(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if path == "" || path[0] != '/' {
		writeError(w, fmt.Errorf("%w: import needs an absolute path", ErrBadRequest))
		return
	}
	imgs, err := s.b.ImportImage(r.Context(), path)
	if err != nil {
		writeError(w, fmt.Errorf("%w: %v", ErrBadRequest, err))
		return
	}
	writeJSON(w, &ImageList{Items: imgs})
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		writeError(w, fmt.Errorf("%w: remove needs an image reference", ErrBadRequest))
		return
	}
	if err := s.b.RemoveImage(r.Context(), ref); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, &ImageList{})
}

func (s *Server) pruneImages(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.b.PruneImages(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, &ImageList{Items: imgs})
}

// pullProgressInterval is how often a layer's byte counts are sent, at most:
// a status change is sent at once.
const pullProgressInterval = 100 * time.Millisecond

// pullImage streams a pull's progress as PullEvents, one JSON object per line,
// and ends with its result or its error. The pull ends when the client goes.
func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		writeError(w, fmt.Errorf("%w: pull needs an image reference", ErrBadRequest))
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	var mu sync.Mutex // guards the writer and last against a late progress call
	type sent struct {
		status string
		at     time.Time
	}
	last := map[string]sent{}
	send := func(ev *PullEvent) {
		if enc.Encode(ev) == nil && flusher != nil {
			flusher.Flush()
		}
	}
	done := false
	res, err := s.b.PullImage(r.Context(), ref, func(p PullProgress) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if l, ok := last[p.Layer]; done || ok && l.status == p.Status && now.Sub(l.at) < pullProgressInterval {
			return
		}
		last[p.Layer] = sent{p.Status, now}
		send(&PullEvent{Progress: &p})
	})
	mu.Lock()
	defer mu.Unlock()
	done = true
	if err != nil {
		code, reason := statusOf(err)
		send(&PullEvent{Error: &Status{Kind: "Status", Status: "Failure", Message: CleanMessage(err), Reason: reason, Code: code}})
		return
	}
	send(&PullEvent{Result: res})
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	evs := s.b.Events(types.UID(r.URL.Query().Get("uid")))
	writeJSON(w, &corev1.EventList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "EventList"}, Items: evs})
}

func (s *Server) pods(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("watch") == "true" {
		s.watch(w, r)
		return
	}
	writeJSON(w, &corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}, Items: s.b.Pods()})
}

func (s *Server) pod(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	for _, p := range s.b.Pods() {
		if p.Namespace == ns && p.Name == name {
			writeJSON(w, &p)
			return
		}
	}
	writeError(w, fmt.Errorf("%w: pods %q not found", ErrNotFound, name))
}

// watch streams WatchEvents: ADDED for every pod, then every change.
func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	changed, cancel := s.b.Subscribe()
	defer cancel()
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	last := map[types.UID]corev1.Pod{}
	send := func() bool {
		cur := map[types.UID]corev1.Pod{}
		for _, p := range s.b.Pods() {
			cur[p.UID] = p
			old, seen := last[p.UID]
			switch {
			case !seen:
				if enc.Encode(&WatchEvent{Type: Added, Object: p}) != nil {
					return false
				}
			case !reflect.DeepEqual(old, p):
				if enc.Encode(&WatchEvent{Type: Modified, Object: p}) != nil {
					return false
				}
			}
		}
		for uid, p := range last {
			if _, ok := cur[uid]; !ok {
				if enc.Encode(&WatchEvent{Type: Deleted, Object: p}) != nil {
					return false
				}
			}
		}
		last = cur
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if !send() {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case _, ok := <-changed:
			if !ok || !send() {
				return
			}
		}
	}
}

func (s *Server) deletePod(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("unmanaged") != "true" {
		writeError(w, fmt.Errorf("%w: agentd runs static pods: delete a pod by removing its manifest file; only --unmanaged pods are deleted through the API", ErrBadRequest))
		return
	}
	if err := s.b.DeleteUnmanaged(r.PathValue("namespace"), r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, &Status{Kind: "Status", Status: "Success", Message: "pod " + r.PathValue("name") + " deleted", Code: http.StatusOK})
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	root, file, err := s.b.LogFile(r.PathValue("namespace"), r.PathValue("name"), q.Get("container"), q.Get("previous") == "true")
	if err != nil {
		writeError(w, err)
		return
	}
	opts := crilog.ReadOptions{Tail: -1, Timestamps: q.Get("timestamps") == "true"}
	if t := q.Get("tailLines"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			writeError(w, fmt.Errorf("%w: tailLines: %v", ErrBadRequest, err))
			return
		}
		opts.Tail = n
	}
	// sinceSeconds, sinceTime and limitBytes as Kubernetes' PodLogOptions.
	since, limit, err := logLimits(q, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	opts.Since = since
	w.Header().Set("Content-Type", "text/plain")
	fw := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.f = f
	}
	ctx := r.Context()
	var out io.Writer = fw
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		out = &limitWriter{w: fw, left: limit, done: cancel}
	}
	if q.Get("follow") == "true" {
		err = crilog.Follow(ctx, root, file, opts, out)
	} else {
		err = crilog.ReadAll(root, file, opts, out)
	}
	if errors.Is(err, errLimitReached) {
		err = nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error(err, "Reading a log failed", "root", root, "file", file)
		if !fw.wrote {
			// Refused before the first line (a symlink planted in the log directory):
			// say so rather than print nothing.
			writeError(w, err)
		}
	}
}

// logLimits reads a log request's sinceSeconds or sinceTime (at most one: the time
// before which lines are skipped) and limitBytes (0: no limit).
func logLimits(q url.Values, now time.Time) (since time.Time, limit int64, err error) {
	if q.Has("sinceSeconds") && q.Has("sinceTime") {
		return time.Time{}, 0, fmt.Errorf("%w: at most one of `sinceTime` or `sinceSeconds` may be specified", ErrBadRequest)
	}
	if s := q.Get("sinceSeconds"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return time.Time{}, 0, fmt.Errorf("%w: sinceSeconds: must be a positive number of seconds, not %q", ErrBadRequest, s)
		}
		since = now.Add(-time.Duration(n) * time.Second)
	}
	if s := q.Get("sinceTime"); s != "" {
		since, err = time.Parse(time.RFC3339, s)
		if err != nil {
			return time.Time{}, 0, fmt.Errorf("%w: sinceTime: %v", ErrBadRequest, err)
		}
	}
	if s := q.Get("limitBytes"); s != "" {
		limit, err = strconv.ParseInt(s, 10, 64)
		if err != nil || limit < 1 {
			return time.Time{}, 0, fmt.Errorf("%w: limitBytes: must be a positive number of bytes, not %q", ErrBadRequest, s)
		}
	}
	return since, limit, nil
}

var errLimitReached = errors.New("limitBytes reached")

// limitWriter passes on the first left bytes (cutting a line if it must, as kubelet
// does) and then calls done and refuses the rest.
type limitWriter struct {
	w    io.Writer
	left int64
	done func()
}

func (lw *limitWriter) Write(p []byte) (int, error) {
	if lw.left <= 0 {
		return 0, errLimitReached
	}
	cut := p
	if int64(len(cut)) > lw.left {
		cut = cut[:lw.left]
	}
	n, err := lw.w.Write(cut)
	lw.left -= int64(n)
	if err != nil {
		return n, err
	}
	if lw.left <= 0 {
		lw.done()
		if n < len(p) {
			return n, errLimitReached
		}
	}
	return n, nil
}

type flushWriter struct {
	w     io.Writer
	f     http.Flusher
	wrote bool
}

func (fw *flushWriter) Write(p []byte) (int, error) {
	fw.wrote = true
	n, err := fw.w.Write(p)
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}

// UpgradeExec is the protocol an exec request upgrades to: monitor protocol frames both ways.
const UpgradeExec = "agentd-exec/1"

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &protocol.ExecRequest{Args: q["command"], Tty: q.Get("tty") == "true"}
	if len(req.Args) == 0 {
		writeError(w, fmt.Errorf("%w: exec needs a command", ErrBadRequest))
		return
	}
	if v, err := strconv.ParseUint(q.Get("width"), 10, 16); err == nil {
		req.Width = uint16(v)
	}
	if v, err := strconv.ParseUint(q.Get("height"), 10, 16); err == nil {
		req.Height = uint16(v)
	}
	s.stream(w, r, "exec", func(ctx context.Context, streams Streams) (int, error) {
		return s.b.Exec(ctx, r.PathValue("namespace"), r.PathValue("name"), q.Get("container"), req, streams)
	})
}

// attach attaches to a container's stdio, as kubectl attach does: the stream ends
// with exit code 0 when the container's run ends or the client detaches.
func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.stream(w, r, "attach", func(ctx context.Context, streams Streams) (int, error) {
		if q.Get("stderr") == "false" {
			streams.Stderr = nil
		}
		return 0, s.b.Attach(ctx, r.PathValue("namespace"), r.PathValue("name"), q.Get("container"), streams)
	})
}

// stream upgrades an exec or attach request to a stream of monitor protocol frames
// (UpgradeExec) and runs it: stdin (query stdin=true), stdout, stderr and resizes
// go to run, whose exit code ends the stream (FrameExit), or its error (FrameError).
func (s *Server) stream(w http.ResponseWriter, r *http.Request, op string, run func(context.Context, Streams) (int, error)) {
	q := r.URL.Query()
	if r.Header.Get("Upgrade") != UpgradeExec {
		writeError(w, fmt.Errorf("%w: %s needs Upgrade: %s", ErrBadRequest, op, UpgradeExec))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, errors.New("connection cannot be hijacked"))
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + UpgradeExec + "\r\nConnection: Upgrade\r\n\r\n")
	_ = buf.Flush()

	out := &frameWriter{w: conn}
	var stdin *io.PipeReader
	var stdinW *io.PipeWriter
	if q.Get("stdin") == "true" {
		stdin, stdinW = io.Pipe()
	}
	resize := make(chan [2]uint16, 4)
	// The client gone (agentctl interrupted) ends the stream's context, so that the backend lets go of it
	// (its monitor connection) rather than hold it as long as the command runs: a hijacked connection's end does
	// not cancel the request's context, by net/http's documentation.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		defer close(resize)
		rd := bufio.NewReader(buf)
		b := make([]byte, 32<<10)
		for {
			typ, payload, err := protocol.ReadFrame(rd, b)
			if err != nil {
				cancel()
				if stdinW != nil {
					stdinW.Close()
				}
				return
			}
			switch typ {
			case protocol.FrameStdin:
				if stdinW != nil {
					_, _ = stdinW.Write(payload)
				}
			case protocol.FrameCloseStdin:
				if stdinW != nil {
					stdinW.Close()
				}
			case protocol.FrameResize:
				if w, h, ok := protocol.ParseResizePayload(payload); ok {
					select {
					case resize <- [2]uint16{w, h}:
					default:
					}
				}
			}
		}
	}()
	streams := Streams{Stdout: out.stream(protocol.FrameStdout), Stderr: out.stream(protocol.FrameStderr), Resize: resize}
	if stdin != nil {
		streams.Stdin = stdin
	}
	code, err := run(ctx, streams)
	if stdin != nil {
		// A command that ended without reading all its stdin: stdin the client sent meanwhile is dropped, not
		// left blocking the goroutine above on a pipe no one reads.
		stdin.Close()
	}
	if err != nil {
		_ = out.frame(protocol.FrameError, []byte(CleanMessage(err)))
		return
	}
	_ = out.frame(protocol.FrameExit, protocol.ExitPayload(code))
}

// frameWriter writes whole frames from several goroutines.
type frameWriter struct {
	mu sync.Mutex // one frame at a time
	w  io.Writer
}

func (f *frameWriter) frame(typ byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return protocol.WriteFrame(f.w, typ, p)
}

// stream is an io.Writer that sends what it is given as frames of one type.
func (f *frameWriter) stream(typ byte) io.Writer { return streamWriter{f, typ} }

type streamWriter struct {
	f   *frameWriter
	typ byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += protocol.MaxFrame {
		end := min(off+protocol.MaxFrame, len(p))
		if err := s.f.frame(s.typ, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func runtimeVersion() string { return goruntime.Version() }
