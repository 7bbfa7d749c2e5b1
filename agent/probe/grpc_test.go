package probe

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
)

// grpcServer serves the standard health service on 127.0.0.1 (or nothing
// when withHealth is false) and returns its port.
func grpcServer(t *testing.T, withHealth bool) (int32, *health.Server) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	hs := health.NewServer()
	if withHealth {
		healthpb.RegisterHealthServer(s, hs)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return int32(l.Addr().(*net.TCPAddr).Port), hs
}

func grpcProbe(port int32, service *string) *corev1.Probe {
	return &corev1.Probe{TimeoutSeconds: 5, ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: port, Service: service}}}
}

func TestGRPC(t *testing.T) {
	port, hs := grpcServer(t, true)
	hs.SetServingStatus("sick", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus("well", healthpb.HealthCheckResponse_SERVING)
	bare, _ := grpcServer(t, false)
	closed := func() int32 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return int32(l.Addr().(*net.TCPAddr).Port)
	}()
	str := func(s string) *string { return &s }

	var dials atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	target := Target{PodIP: "127.0.0.1", Dial: dial}
	for _, c := range []struct {
		name    string
		probe   *corev1.Probe
		target  Target
		want    Result
		message string
	}{
		{"the server as a whole serves", grpcProbe(port, nil), target, Success, "service healthy"},
		{"a serving service", grpcProbe(port, str("well")), target, Success, "service healthy"},
		{"a service not serving", grpcProbe(port, str("sick")), target, Failure, `service unhealthy (responded with "NOT_SERVING")`},
		{"an unknown service", grpcProbe(port, str("nope")), target, Failure, "error: health rpc probe failed"},
		{"no health service", grpcProbe(bare, nil), target, Failure, "does not implement the grpc health protocol"},
		{"nothing listening", grpcProbe(closed, nil), target, Failure, "failed to connect service"},
		{"no pod IP yet", grpcProbe(port, nil), Target{Dial: dial}, Unknown, "no IP"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, msg := Probe(context.Background(), Liveness, c.probe, c.target)
			if r != c.want || !strings.Contains(msg, c.message) {
				t.Errorf("Probe = %v %q, want %v and a message containing %q", r, msg, c.want, c.message)
			}
		})
	}
	if dials.Load() == 0 {
		t.Error("the probe did not dial through the target's dialer (the pod's network namespace)")
	}
}
