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
    imagePullPolicy: Never
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
			p.Status.ContainerStatuses[0].State.Running != nil, a.show("describe", "pod", "live")
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
	// KILL comes 2 s after TERM; the last touch is one 0.1 s loop before it,
	// more on a busy machine (touch and sleep are processes): 1.5 s leaves
	// room for that, and is far from the 0 s the container got when preStop
	// had used up its grace period.
	if d := alive.Sub(term); d < 1500*time.Millisecond {
		t.Errorf("the container lived %v after TERM: want 2 s before KILL", d)
	}
	ev := a.ctl("get", "events")
	if !strings.Contains(ev, "Container main failed liveness probe, will be restarted") {
		t.Errorf("no Killing event for the liveness failure:\n%s", ev)
	}
}

// TestE2ESidecars: init containers with restartPolicy Always start in order with
// the others, the next one once the sidecar runs; a sidecar that exits is
// restarted while the app runs (the pod's policy is Never); on removal the app
// container gets TERM first, then the sidecars, the last one first.
func TestE2ESidecars(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	marks := filepath.Join(a.dir, "marks")
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each container appends its name to /m/order when it starts, and on TERM
	// touches /m/term-<name> (the kernel's mtime is when) and exits half a
	// second later, so that what waits for it gets TERM visibly after.
	run := func(name, body string) string {
		return fmt.Sprintf("echo %s >> /m/order; trap 'touch /m/term-%s; sleep 0.5; exit 0' TERM; %s", name, name, body)
	}
	loop := "while true; do sleep 0.2 & wait; done"
	a.write("side.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: side}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 20
  volumes: [{name: m, hostPath: {path: %s, type: Directory}}]
  initContainers:
  - name: setup
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo setup >> /m/order"]
    volumeMounts: [{name: m, mountPath: /m}]
  - name: log
    image: localhost/busybox:latest
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sh", "-c", %q]
    volumeMounts: [{name: m, mountPath: /m}]
  - name: proxy
    image: localhost/busybox:latest
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sh", "-c", %q]
    volumeMounts: [{name: m, mountPath: /m}]
    startupProbe:
      exec: {command: ["test", "-e", "/m/proxy-up"]}
      periodSeconds: 1
      failureThreshold: 60
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
    volumeMounts: [{name: m, mountPath: /m}]
`, marks, run("log", loop),
		run("proxy", "touch /m/proxy-up; while [ ! -e /m/quit-proxy ]; do sleep 0.2 & wait; done; rm /m/quit-proxy; exit 0"),
		run("main", loop)))
	a.eventually(60*time.Second, "side 3/3 Running", func() (bool, string) {
		out, _ := a.try("get", "pods", "side", "--no-headers")
		f := strings.Fields(out)
		return len(f) > 2 && f[1] == "3/3" && f[2] == "Running", out
	})
	order := func() string { b, _ := os.ReadFile(filepath.Join(marks, "order")); return string(b) }
	// Running is reported once main's process is there, maybe before its
	// shell wrote its line.
	a.eventually(30*time.Second, "main's start recorded", func() (bool, string) {
		return strings.Count(order(), "\n") >= 4, order()
	})
	if got := order(); got != "setup\nlog\nproxy\nmain\n" {
		t.Errorf("start order %q, want setup, log, proxy, main", got)
	}

	// The sidecar exits (status 0, pod policy Never): it is restarted, the app runs on.
	if err := os.WriteFile(filepath.Join(marks, "quit-proxy"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.eventually(60*time.Second, "proxy restarted", func() (bool, string) {
		p := a.pod("side")
		if p == nil || len(p.Status.InitContainerStatuses) != 3 || len(p.Status.ContainerStatuses) != 1 {
			return false, ""
		}
		proxy, main := p.Status.InitContainerStatuses[2], p.Status.ContainerStatuses[0]
		return proxy.RestartCount == 1 && proxy.State.Running != nil && main.RestartCount == 0 && main.State.Running != nil,
			a.show("describe", "pod", "side")
	})

	_ = os.Remove(filepath.Join(a.manifest, "side.yaml"))
	a.waitGone("side", 60*time.Second)
	termAt := func(name string) time.Time {
		t.Helper()
		st, err := os.Stat(filepath.Join(marks, "term-"+name))
		if err != nil {
			t.Fatalf("%s recorded no TERM: %v", name, err)
		}
		return st.ModTime()
	}
	mainT, proxyT, logT := termAt("main"), termAt("proxy"), termAt("log")
	t.Logf("TERM: main → proxy %v, proxy → log %v", proxyT.Sub(mainT).Round(time.Millisecond), logT.Sub(proxyT).Round(time.Millisecond))
	if !(mainT.Before(proxyT) && proxyT.Before(logT)) {
		t.Errorf("TERM order main %v, proxy %v, log %v: want the app first, then the sidecars last first", mainT, proxyT, logT)
	}
}

// TestE2ESidecarsJob: once the app container of a pod with restartPolicy Never
// has exited, its sidecar gets TERM and the pod is Completed (Succeeded), as
// with kubelet, instead of running for ever.
func TestE2ESidecarsJob(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	marks := filepath.Join(a.dir, "marks")
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	a.write("job.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 20
  volumes: [{name: m, hostPath: {path: %s, type: Directory}}]
  initContainers:
  - name: side
    image: localhost/busybox:latest
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sh", "-c", "trap 'touch /m/term-side; exit 0' TERM; while true; do sleep 0.2 & wait; done"]
    volumeMounts: [{name: m, mountPath: /m}]
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo done"]
`, marks))
	a.eventually(60*time.Second, "job Completed", func() (bool, string) {
		out, _ := a.try("get", "pods", "job", "--no-headers")
		f := strings.Fields(out)
		p := a.pod("job")
		return len(f) > 2 && f[2] == "Completed" && p != nil && p.Status.Phase == "Succeeded", out
	})
	if _, err := os.Stat(filepath.Join(marks, "term-side")); err != nil {
		t.Errorf("the sidecar got no TERM: %v", err)
	}
}
