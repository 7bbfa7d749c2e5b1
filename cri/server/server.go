// Package server is agentd's Kubernetes CRI v1 endpoint: a gRPC server of
// runtime.v1.RuntimeService and ImageService (k8s.io/cri-api) over a Backend,
// which package agent implements (agent/cri.go). agentd serves it on the
// `cri.socket` setting (default <run-dir>/cri.sock; empty turns it off), a
// socket only root may use, beside the agentctl API.
//
// What is served so far: Version, Status and RuntimeConfig; the image service
// over agentd's image store (ListImages, ImageStatus, RemoveImage,
// ImageFsInfo). Every other RPC answers codes.Unimplemented. Handlers return
// plain errors that wrap the sentinels of errors.go (or of the packages below,
// image and protocol); one function, toStatus, turns them into gRPC codes.
package server

import (
	"context"
	"fmt"
	"net"
	goruntime "runtime"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/image"
)

// Backend is the agent as the CRI sees it. Implementations are safe for
// concurrent use, and every method returns promptly (no method waits for a
// container or the network); ctx is the RPC's and ends with it.
type Backend interface {
	StreamBackend
	SandboxBackend
	ContainerBackend
	InfoBackend // info.go
	PullBackend // pull.go

	// NetworkStatus says whether the pod network is up; when it is not, reason
	// is one CamelCase word and message says why and what to do.
	NetworkStatus() (ready bool, reason, message string)

	// Images lists the image store.
	Images() ([]image.Image, error)
	// Image finds the image ref names: a name (normalised as image.NormalizeName
	// does), repo@digest, an image ID or a unique ID prefix. An absent image
	// is an error wrapping image.ErrNotFound; a malformed ref one wrapping
	// image.ErrInvalidReference.
	Image(ref string) (*image.Image, error)
	// RemoveImage removes the image ref names with all its names, as the CRI
	// wants. An absent image is an error wrapping image.ErrNotFound; an image
	// a container uses is not removed, and the error wraps
	// ErrFailedPrecondition and names the container.
	RemoveImage(ctx context.Context, ref string) error
	// ImageFs is the usage of the filesystem that holds the image store.
	ImageFs() (FsUsage, error)
}

// FsUsage is a filesystem's usage as ImageFsInfo reports it.
type FsUsage struct {
	// Mountpoint identifies the filesystem: the image store's directory, as
	// containerd reports its snapshotter's (kubelet and cAdvisor resolve it to
	// its device).
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// RuntimeName is the runtime_name Version reports.
const RuntimeName = "agentd"

// Server is the CRI gRPC server. Serve it on a listener with Serve; Stop ends it.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	b       Backend
	log     logr.Logger
	version string
	now     func() time.Time
	grpc    *grpc.Server
	streams *streams // ServeStreams's; nil while the streaming server is off
}

var (
	_ runtimeapi.RuntimeServiceServer = (*Server)(nil)
	_ runtimeapi.ImageServiceServer   = (*Server)(nil)
)

// New returns a server of b; version is agentd's version (agent/version),
// reported as runtime_version.
func New(b Backend, version string, log logr.Logger) *Server {
	s := &Server{b: b, log: log, version: version, now: time.Now}
	s.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.unaryErrors),
		grpc.ChainStreamInterceptor(s.streamErrors),
	)
	runtimeapi.RegisterRuntimeServiceServer(s.grpc, s)
	runtimeapi.RegisterImageServiceServer(s.grpc, s)
	return s
}

// Serve serves CRI requests on l until Stop; it closes l. l should be a socket
// only root can use (api.ListenUnix).
func (s *Server) Serve(l net.Listener) error { return s.grpc.Serve(l) }

// Stop ends the server: it lets running requests finish for up to grace, then
// closes their connections, and closes the listener (which removes a Unix
// socket made by net.Listen). It stops the streaming server too.
func (s *Server) Stop(grace time.Duration) {
	if s.streams != nil {
		s.streams.stop(grace)
	}
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		s.grpc.Stop()
		<-done
	}
}

// unaryErrors turns a handler's error into a gRPC status (toStatus), logs it,
// and turns a handler's panic into an Internal error instead of ending agentd.
func (s *Server) unaryErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			buf := make([]byte, 8<<10)
			buf = buf[:goruntime.Stack(buf, false)]
			s.log.Error(fmt.Errorf("panic: %v", p), "CRI request panicked", "method", info.FullMethod, "stack", string(buf))
			resp, err = nil, status.Errorf(codes.Internal, "%s: agentd failed: %v", info.FullMethod, p)
		}
	}()
	resp, err = handler(ctx, req)
	if err != nil {
		err = toStatus(err)
		s.logFailure(info.FullMethod, err)
	}
	return resp, err
}

func (s *Server) streamErrors(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error(fmt.Errorf("panic: %v", p), "CRI request panicked", "method", info.FullMethod)
			err = status.Errorf(codes.Internal, "%s: agentd failed: %v", info.FullMethod, p)
		}
	}()
	if err = handler(srv, ss); err != nil {
		err = toStatus(err)
		s.logFailure(info.FullMethod, err)
	}
	return err
}

// logFailure logs a failed request: agentd's own failures always, the
// caller's (unknown object, bad argument, unimplemented) at debug level.
func (s *Server) logFailure(method string, err error) {
	switch status.Code(err) {
	case codes.Internal, codes.Unknown, codes.ResourceExhausted:
		s.log.Error(err, "CRI request failed", "method", method)
	default:
		s.log.V(1).Info("CRI request failed", "method", method, "code", status.Code(err).String(), "error", err.Error())
	}
}
