package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EGRPCProbe: gRPC probes reach a real health server in the pod's own
// network namespace; SERVING makes the container ready, NOT_SERVING fails a
// liveness probe and restarts the container.
func TestE2EGRPCProbe(t *testing.T) {
	a := newAgent(t, nil)
	bin := filepath.Join(a.dir, "grpcbin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "grpchealth"), "./testdata/grpchealth")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build grpchealth: %v\n%s", err, out)
	}
	a.start()
	a.write("grpc.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: grpc}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{name: bin, hostPath: {path: %s, type: Directory}}]
  containers:
  - name: server
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["/grpc/grpchealth", "9555"]
    volumeMounts: [{name: bin, mountPath: /grpc, readOnly: true}]
    readinessProbe: {grpc: {port: 9555}, periodSeconds: 1}
    livenessProbe: {grpc: {port: 9555, service: well}, periodSeconds: 1}
  - name: watcher
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"]
    livenessProbe: {grpc: {port: 9555, service: sick}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}
`, bin))
	a.eventually(60*time.Second, "server ready and watcher restarted by its liveness probe", func() (bool, string) {
		p := a.pod("grpc")
		if p == nil {
			return false, "no pod"
		}
		ready, restarts := false, int32(0)
		for _, cs := range p.Status.ContainerStatuses {
			switch cs.Name {
			case "server":
				ready = cs.Ready && cs.RestartCount == 0
			case "watcher":
				restarts = cs.RestartCount
			}
		}
		return ready && restarts >= 1, fmt.Sprintf("%+v", p.Status.ContainerStatuses)
	})
	a.eventually(30*time.Second, "the probe's message in an event", func() (bool, string) {
		out, _ := a.try("get", "events")
		return containsAll(out, "Unhealthy", `service unhealthy (responded with "NOT_SERVING")`), out
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
