package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
)

// probeGRPC calls the standard health-checking protocol's Check
// (grpc.health.v1.Health) on the pod IP at the action's port, through t's
// dialer, with the action's service ("" when unset: the server as a whole), as
// kubelet's gRPC prober does: plaintext, SERVING is a success, anything else a
// failure. Its messages are kubelet's.
func probeGRPC(ctx context.Context, a *corev1.GRPCAction, t Target, timeout time.Duration) (Result, string) {
	if a.Port < 1 || a.Port > 65535 {
		return Failure, fmt.Sprintf("grpc probe: port %d is not between 1 and 65535", a.Port)
	}
	if t.PodIP == "" {
		return Unknown, "grpc probe: " + errNoHost.Error()
	}
	addr := net.JoinHostPort(t.PodIP, strconv.Itoa(int(a.Port)))
	dial := dialerOf(t)
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(UserAgent),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		}),
	)
	if err != nil {
		return Failure, fmt.Sprintf("error: failed to connect service at %q: %+v", addr, err)
	}
	defer conn.Close()
	service := ""
	if a.Service != nil {
		service = *a.Service
	}
	// Without WaitForReady the call fails at once when the connection cannot
	// be made, as kubelet's blocking dial does.
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		switch st, _ := status.FromError(err); st.Code() {
		case codes.Unimplemented:
			return Failure, fmt.Sprintf("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): %s", st.Message())
		case codes.DeadlineExceeded:
			return Failure, fmt.Sprintf("timeout: health rpc did not complete within %v", timeout)
		case codes.Unavailable:
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return Failure, fmt.Sprintf("timeout: failed to connect service %q within %v: %v", addr, timeout, st.Message())
			}
			return Failure, fmt.Sprintf("error: failed to connect service at %q: %s", addr, st.Message())
		}
		return Failure, fmt.Sprintf("error: health rpc probe failed: %+v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return Failure, fmt.Sprintf("service unhealthy (responded with %q)", resp.GetStatus().String())
	}
	return Success, "service healthy"
}
