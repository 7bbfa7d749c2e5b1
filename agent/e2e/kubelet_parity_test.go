package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestE2EProbeErroredEvent: a probe whose command cannot be run at all is
// kubelet's prober error, a Warning Unhealthy event "Readiness probe errored
// and resulted in unknown state: <error>", not "probe failed"; the container
// stays not ready.
func TestE2EProbeErroredEvent(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("errored.yaml", `apiVersion: v1
kind: Pod
metadata: {name: errored}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"]
    readinessProbe:
      exec: {command: ["/no/such/probe"]}
      periodSeconds: 1
`)
	a.waitStatus("errored", "Running", 30*time.Second)
	a.eventually(30*time.Second, "the errored probe's Unhealthy event", func() (bool, string) {
		out := a.ctl("get", "events", "-o", "json")
		var evs corev1.EventList
		if err := json.Unmarshal([]byte(out), &evs); err != nil {
			t.Fatalf("get events -o json: %v\n%s", err, out)
		}
		for _, e := range evs.Items {
			if e.Reason == "Unhealthy" && strings.Contains(e.Message, "probe failed") {
				t.Fatalf("a probe that cannot run reported as failed, want errored: %s", e.Message)
			}
			if e.Type == corev1.EventTypeWarning && e.Reason == "Unhealthy" && e.InvolvedObject.Name == "errored" &&
				strings.HasPrefix(e.Message, "Readiness probe errored and resulted in unknown state: ") && strings.Contains(e.Message, "/no/such/probe") {
				return true, ""
			}
		}
		return false, out
	})
	if p := a.pod("errored"); p == nil || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].Ready {
		t.Errorf("want the container not ready: %s", a.ctl("get", "pods"))
	}
}

// TestE2EKillPathPreStopOnce: the pod is removed while its liveness probe's kill
// runs the preStop hook: the hook runs once for that run of the container, and
// the removal lets it finish before TERM.
func TestE2EKillPathPreStopOnce(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	marks := filepath.Join(a.dir, "marks")
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	a.write("once.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  terminationGracePeriodSeconds: 30
  volumes: [{name: m, hostPath: {path: %s, type: Directory}}]
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'echo term >> /m/log; exit 0' TERM; while true; do sleep 0.2 & wait; done"]
    volumeMounts: [{name: m, mountPath: /m}]
    livenessProbe:
      exec: {command: ["sh", "-c", "test ! -e /m/unhealthy"]}
      periodSeconds: 1
      failureThreshold: 1
    lifecycle:
      preStop: {exec: {command: ["sh", "-c", "echo prestop >> /m/log; until test -e /m/go; do sleep 0.1; done; echo prestop-done >> /m/log"]}}
`, marks))
	a.waitStatus("once", "Running", 30*time.Second)
	if err := os.WriteFile(filepath.Join(marks, "unhealthy"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	log := func() string { b, _ := os.ReadFile(filepath.Join(marks, "log")); return string(b) }
	a.eventually(60*time.Second, "the liveness kill's preStop hook", func() (bool, string) {
		return strings.Contains(log(), "prestop"), a.show("get", "events")
	})
	if err := os.Remove(filepath.Join(a.manifest, "once.yaml")); err != nil {
		t.Fatal(err)
	}
	a.eventually(30*time.Second, "the removal's Killing event", func() (bool, string) {
		out := a.ctl("get", "events")
		return strings.Count(out, "Killing") >= 2 && strings.Contains(out, "Stopping container main"), out
	})
	if err := os.WriteFile(filepath.Join(marks, "go"), nil, 0o644); err != nil { // the hook may finish
		t.Fatal(err)
	}
	a.waitGone("once", 90*time.Second)
	lines := strings.Fields(log())
	prestops := 0
	for _, l := range lines {
		if l == "prestop" {
			prestops++
		}
	}
	if prestops != 1 {
		t.Errorf("the preStop hook ran %d times, want once; log: %v", prestops, lines)
	}
	if len(lines) < 3 || lines[0] != "prestop" || lines[1] != "prestop-done" || lines[2] != "term" {
		t.Errorf("want the hook to finish before TERM; log: %v", lines)
	}
}
