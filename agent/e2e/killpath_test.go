package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2ELivenessKillPath: a container whose liveness probe fails is killed as a
// pod deletion kills it (kubelet's killContainer): its preStop hook runs first,
// then TERM, and although the hook sleeps past the grace period the container
// still has 2 s between TERM and KILL; then it is restarted.
func TestE2ELivenessKillPath(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	// The container and its hook record what happened as files in a host
	// directory; the kernel's mtimes, not the test's waits, give the times.
	marks := filepath.Join(a.dir, "marks")
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	// On TERM the container keeps running and touches /m/alive every 0.1 s
	// until KILL ends it: its last touch is at most a loop before KILL.
	a.write("live.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: m, hostPath: {path: %s, type: Directory}}]
  containers:
  - name: main
    image: localhost/busybox:latest
    command: ["sh", "-c", "trap 'touch /m/term; while true; do touch /m/alive; sleep 0.1; done' TERM; while true; do sleep 0.2 & wait; done"]
    volumeMounts: [{name: m, mountPath: /m}]
    livenessProbe:
      exec: {command: ["sh", "-c", "test ! -e /m/unhealthy"]}
      periodSeconds: 1
      failureThreshold: 1
    lifecycle:
      preStop: {exec: {command: ["sh", "-c", "touch /m/prestop; rm -f /m/unhealthy; sleep 10"]}}
`, marks))
	a.waitStatus("live", "Running", 30*time.Second)
	if err := os.WriteFile(filepath.Join(marks, "unhealthy"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.eventually(60*time.Second, "a restart by the liveness probe", func() (bool, string) {
		p := a.pod("live")
		return p != nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1 &&
			p.Status.ContainerStatuses[0].State.Running != nil, a.ctl("describe", "pod", "live")
	})
	mtime := func(name string) time.Time {
		t.Helper()
		st, err := os.Stat(filepath.Join(marks, name))
		if err != nil {
			t.Fatalf("no %s mark: %v", name, err)
		}
		return st.ModTime()
	}
	preStop, term, alive := mtime("prestop"), mtime("term"), mtime("alive")
	t.Logf("preStop → TERM %v, TERM → last sign of life %v", term.Sub(preStop).Round(time.Millisecond), alive.Sub(term).Round(time.Millisecond))
	if !preStop.Before(term) {
		t.Errorf("TERM (%v) came before the preStop hook (%v)", term, preStop)
	}
	// KILL comes 2 s after TERM; the last touch is at most one 0.1 s loop (and
	// a busy machine's delay, which only lengthens it) before.
	if d := alive.Sub(term); d < 1800*time.Millisecond {
		t.Errorf("the container lived %v after TERM: want 2 s before KILL", d)
	}
	ev := a.ctl("get", "events")
	if !strings.Contains(ev, "Container main failed liveness probe, will be restarted") {
		t.Errorf("no Killing event for the liveness failure:\n%s", ev)
	}
}
