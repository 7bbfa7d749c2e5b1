package agent

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/runtime"
)

// A container killed because its liveness probe or its postStart hook failed
// is stopped as a pod deletion stops it (kubelet's killContainer): a Killing
// event, its preStop hook, then the stop signal with at least 2 s before KILL,
// and its monitor restarts it by the restart policy.
func TestAgentKillPath(t *testing.T) {
	cases := []struct {
		name, manifest, message string
	}{
		{"liveness", `
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    livenessProbe:
      exec: {command: [fail]}
      periodSeconds: 1
      failureThreshold: 1
    lifecycle:
      preStop: {exec: {command: [prestop]}}
`, "Container app failed liveness probe, will be restarted"},
		{"postStart", `
apiVersion: v1
kind: Pod
metadata: {name: hook}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    lifecycle:
      postStart: {exec: {command: [fail]}}
      preStop: {exec: {command: [prestop]}}
`, "FailedPostStartHook"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			n.rt.SetExecExit("fail", 1)
			r := n.start(false)
			p := pod(t, tc.manifest)
			id := runtime.MonitorID(string(p.UID), "app")
			r.desire(p)
			r.waitFor(t, "the container killed", func() bool { return len(n.rt.Graces(id)) > 0 })
			r.waitFor(t, "the Killing event", func() bool { return r.hasEvent("Killing", tc.message) })
			calls := n.rt.Calls()
			preStop := slices.Index(calls, "Exec "+id+" [prestop]")
			kill := slices.Index(calls, "Kill "+id)
			if preStop < 0 || kill < 0 || preStop > kill {
				t.Fatalf("want the preStop hook run before Kill; calls: %v", calls)
			}
			if g := n.rt.Graces(id)[0]; g < minGracePeriod {
				t.Errorf("Kill was given %v between TERM and KILL, want at least %v", g, minGracePeriod)
			}
			r.waitFor(t, "the container restarted", func() bool { return count(n.rt.Calls(), "Kill "+id) >= 1 && r.restarts("app") >= 1 })
		})
	}
}

// A pod whose grace period the preStop hook cannot leave anything of still
// gives its containers 2 s between TERM and KILL when it is removed.
func TestAgentPodDeletionMinimumGrace(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	p := pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: app, image: busybox}
`)
	id := runtime.MonitorID(string(p.UID), "app")
	r.desire(p)
	r.waitFor(t, "web running", r.running("web", 0))
	r.desire()
	r.waitFor(t, "web gone", func() bool { _, ok := r.status("web"); return !ok && !n.rt.HasSandbox(string(p.UID)) })
	if g := n.rt.Graces(id); len(g) != 1 || g[0] != minGracePeriod {
		t.Errorf("Stop was given %v, want [%v]", g, minGracePeriod)
	}
	if !r.hasEvent("Killing", "Stopping container app") {
		t.Error("no Killing event")
	}
}

// restarts is the restart count of the container name of the (newest) pod shown.
func (r *agentRun) restarts(name string) int32 {
	for _, p := range (apiBackend{r.a}).Pods() {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == name {
				return cs.RestartCount
			}
		}
	}
	return 0
}

// Sidecars start in order with the init containers, without waiting for them
// to exit; they restart whatever the pod's policy, and stop after the app
// containers, the last sidecar first.
func TestAgentSidecars(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	p := pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: side}
spec:
  restartPolicy: Never
  initContainers:
  - {name: setup, image: busybox}
  - {name: log, image: busybox, restartPolicy: Always}
  - {name: proxy, image: busybox, restartPolicy: Always}
  containers:
  - {name: app, image: busybox}
`)
	id := func(name string) string { return runtime.MonitorID(string(p.UID), name) }
	r.desire(p)
	r.waitFor(t, "setup started", func() bool { return count(n.rt.Calls(), "Start "+id("setup")) == 1 })
	if count(n.rt.Calls(), "Start "+id("log")) != 0 {
		t.Fatal("the sidecar started before the init container before it exited")
	}
	n.rt.Exit(id("setup"), 0)
	r.waitFor(t, "app started", func() bool { return count(n.rt.Calls(), "Start "+id("app")) == 1 })
	calls := n.rt.Calls()
	if !(slices.Index(calls, "Start "+id("log")) < slices.Index(calls, "Start "+id("proxy")) &&
		slices.Index(calls, "Start "+id("proxy")) < slices.Index(calls, "Start "+id("app"))) {
		t.Fatalf("start order: %v", calls)
	}
	r.waitFor(t, "side Running", func() bool { st, ok := r.status("side"); return ok && st.Phase == "Running" })

	// A sidecar that exits is restarted although the pod's policy is Never.
	n.rt.Exit(id("proxy"), 0)
	r.waitFor(t, "proxy restarted", func() bool {
		st, _ := r.status("side")
		for _, cs := range st.InitContainerStatuses {
			if cs.Name == "proxy" {
				return cs.RestartCount == 1 && cs.State.Running != nil
			}
		}
		return false
	})

	r.desire()
	r.waitFor(t, "side gone", func() bool { return !n.rt.HasSandbox(string(p.UID)) })
	calls = n.rt.Calls()
	app, proxy, log := slices.Index(calls, "Stop "+id("app")), slices.Index(calls, "Stop "+id("proxy")), slices.Index(calls, "Stop "+id("log"))
	if app < 0 || proxy < 0 || log < 0 || !(app < proxy && proxy < log) {
		t.Fatalf("want app, then proxy, then log stopped: %v", calls)
	}
}

// Once the app containers of a pod that does not restart them have exited,
// its sidecars are stopped (the last one first) and the pod is Succeeded, as
// kubelet does; the pod stays until its manifest goes.
func TestAgentSidecarsStopAfterApps(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	p := pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: OnFailure
  initContainers:
  - {name: log, image: busybox, restartPolicy: Always}
  - {name: proxy, image: busybox, restartPolicy: Always}
  containers:
  - {name: app, image: busybox}
`)
	id := func(name string) string { return runtime.MonitorID(string(p.UID), name) }
	r.desire(p)
	r.waitFor(t, "job Running", func() bool { st, ok := r.status("job"); return ok && st.Phase == "Running" })
	if c := n.rt.Calls(); count(c, "Stop "+id("log")) != 0 || count(c, "Stop "+id("proxy")) != 0 {
		t.Fatalf("sidecars stopped while the app runs: %v", c)
	}
	n.rt.Exit(id("app"), 0)
	r.waitFor(t, "job Succeeded", func() bool { st, ok := r.status("job"); return ok && st.Phase == "Succeeded" })
	calls := n.rt.Calls()
	proxy, log := slices.Index(calls, "Stop "+id("proxy")), slices.Index(calls, "Stop "+id("log"))
	if proxy < 0 || log < 0 || proxy > log {
		t.Fatalf("want proxy, then log stopped: %v", calls)
	}
	if !n.rt.HasSandbox(string(p.UID)) {
		t.Error("the finished pod was removed")
	}
}

// A pod with a sidecar is adopted by a restarted agentd (live restore) as it
// is: nothing started twice, the sidecar counted ready again.
func TestAgentAdoptsSidecars(t *testing.T) {
	n := newNode(t)
	first := n.start(true)
	p := pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: kept}
spec:
  initContainers:
  - {name: proxy, image: busybox, restartPolicy: Always}
  containers:
  - {name: app, image: busybox}
`)
	ready := func(r *agentRun) func() bool {
		return func() bool {
			st, ok := r.status("kept")
			if !ok || st.Phase != corev1.PodRunning || len(st.InitContainerStatuses) != 1 || !st.InitContainerStatuses[0].Ready {
				return false
			}
			for _, c := range st.Conditions {
				if c.Type == corev1.PodReady {
					return c.Status == corev1.ConditionTrue
				}
			}
			return false
		}
	}
	first.desire(p)
	first.waitFor(t, "kept ready", ready(first))
	first.stop(t)

	second := n.start(true)
	second.desire(p)
	second.waitFor(t, "kept ready again", ready(second))
	calls := n.rt.Calls()
	for _, name := range []string{"proxy", "app"} {
		if got := count(calls, "Start "+runtime.MonitorID(string(p.UID), name)); got != 1 {
			t.Errorf("%s started %d times, want once", name, got)
		}
	}
}

// A liveness probe's kill and the pod's removal that overlap run the preStop
// hook once for the run of the container both stop, and the removal's stop
// signal waits for that hook rather than cutting it short.
func TestAgentPreStopOncePerRun(t *testing.T) {
	n := newNode(t)
	n.rt.SetExecExit("fail", 1)
	release := n.rt.HoldExec("prestop")
	defer release()
	r := n.start(false)
	p := pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 60
  containers:
  - name: app
    image: busybox
    livenessProbe:
      exec: {command: [fail]}
      periodSeconds: 1
      failureThreshold: 1
    lifecycle:
      preStop: {exec: {command: [prestop]}}
`)
	id := runtime.MonitorID(string(p.UID), "app")
	hook := "Exec " + id + " [prestop]"
	r.desire(p)
	r.waitFor(t, "the liveness kill's preStop hook", func() bool { return count(n.rt.Calls(), hook) == 1 })
	r.desire() // the pod is removed while the hook runs
	r.waitFor(t, "the removal's Killing event", func() bool { return r.eventCount("Killing") >= 2 })
	release()
	r.waitFor(t, "the pod gone", func() bool { _, ok := r.status("live"); return !ok && !n.rt.HasSandbox(string(p.UID)) })
	calls := n.rt.Calls()
	if got := count(calls, hook); got != 1 {
		t.Errorf("the preStop hook ran %d times, want once; calls: %v", got, calls)
	}
	done := slices.Index(calls, hook+" done")
	stop := slices.Index(calls, "Stop "+id)
	if done < 0 || stop < 0 || stop < done {
		t.Errorf("want the removal's Stop after the hook returned; calls: %v", calls)
	}
}

// The time between the stop signal and KILL is kubelet's: the grace period in
// whole seconds, less the whole seconds the preStop hook took (and, for a
// sidecar, the wait for its turn), at least 2 s.
func TestStopGrace(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	for _, tc := range []struct {
		name              string
		grace, hook, turn time.Duration
		want              time.Duration
	}{
		{"no hook", 30 * s, 0, 0, 30 * s},
		{"a hook's fraction of a second is not counted", 30 * s, 900 * ms, 0, 30 * s},
		{"a hook of 2.9 s uses 2 s", 30 * s, 2900 * ms, 0, 28 * s},
		{"the hook and the turn each truncated", 30 * s, 1500 * ms, 2500 * ms, 27 * s},
		{"a fraction of a grace period is not given", 10*s + 700*ms, 0, 0, 10 * s},
		{"at least 2 s after a hook that used it all", 5 * s, 5 * s, 0, minGracePeriod},
		{"at least 2 s after a hook that overran", 5 * s, 9 * s, 0, minGracePeriod},
		{"at least 2 s with 3 s and a hook of 1.5 s", 3 * s, 1500 * ms, 0, minGracePeriod},
		{"no grace period", 0, 0, 0, minGracePeriod},
	} {
		t.Run(tc.name, func(t *testing.T) {
			left := stopGrace(tc.grace, tc.hook)
			left = stopGrace(left, tc.turn)
			if got := max(left, minGracePeriod); got != tc.want {
				t.Errorf("grace %v, hook %v, turn %v: %v between signal and KILL, want %v", tc.grace, tc.hook, tc.turn, got, tc.want)
			}
		})
	}
}
