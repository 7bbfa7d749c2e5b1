package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/image/pull"
	"github.com/agentd-project/agentd/agent/metrics"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/runtime/runtimetest"
	"github.com/agentd-project/agentd/agent/source"
	"github.com/agentd-project/agentd/spec"
)

// The agent's loop, pod workers, status manager and restore, driven through a
// fake runtime: no root, no containers.

// fakeImages has the images named in present.
type fakeImages struct {
	mu      sync.Mutex // guards present
	present map[string]bool
}

func (f *fakeImages) add(ref string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.present[ref] = true
}

func (f *fakeImages) List() ([]image.Image, error) { return nil, nil }
func (f *fakeImages) Import(context.Context, string) ([]image.Image, error) {
	return nil, nil
}
func (f *fakeImages) SetLimits(image.Limits) {}
func (f *fakeImages) Resolve(ref string) (*runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.present[ref] && (ref != fakeImageID || len(f.present) == 0) {
		return nil, &runtime.ImageNeverPullError{Ref: ref}
	}
	return &runtime.Image{Name: ref, ID: fakeImageID, Cmd: []string{"/bin/true"}}, nil
}

// fakeImageID is the ID of every image of fakeImages.
var fakeImageID = "sha256:" + strings.Repeat("a", 64)

// fakeRegistry is an ImagePuller whose registry holds what fakeImages holds:
// a pull of an image present succeeds (as a registry answering with the
// digest the node has already), of another fails with not found.
type fakeRegistry struct{ images *fakeImages }

func (f fakeRegistry) Pull(_ context.Context, ref string, _ authn.Authenticator, _ func(pull.Progress)) (pull.Result, error) {
	if _, err := f.images.Resolve(ref); err != nil {
		return pull.Result{}, fmt.Errorf("%s: manifest unknown", ref)
	}
	return pull.Result{ImageID: fakeImageID, Names: []string{ref}, Size: 1}, nil
}

// node is the state one agent after another runs on: its directories and runtime.
type node struct {
	t      *testing.T
	dir    string
	rt     *runtimetest.Runtime
	images *fakeImages
	// backoffBase is the agents' backoff-base (0: kubelet's 10s).
	backoffBase time.Duration
	// metrics, if set, are the agents' (Options.Metrics).
	metrics *metrics.Metrics
}

func newNode(t *testing.T) *node {
	dir := t.TempDir()
	return &node{t: t, dir: dir, rt: runtimetest.New(filepath.Join(dir, "run")),
		images: &fakeImages{present: map[string]bool{"busybox": true}}}
}

// agentRun is one agent running on a node.
type agentRun struct {
	a      *Agent
	snaps  chan source.Snapshot
	cancel context.CancelFunc
	done   chan error
}

// start runs an agent on the node: restore, then its loop.
func (n *node) start(liveRestore bool) *agentRun {
	t := n.t
	opts := Options{ManifestDir: filepath.Join(n.dir, "manifests"), Root: filepath.Join(n.dir, "root"),
		RunDir: filepath.Join(n.dir, "run"), LogDir: filepath.Join(n.dir, "logs"), NodeName: "node-a",
		LiveRestore: liveRestore, BackoffBase: n.backoffBase, Log: logr.Discard(), Metrics: n.metrics}
	a := newAgent(opts, n.rt, n.images)
	a.imageMgr.setPuller(fakeRegistry{n.images})
	a.setNetwork(nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.restore(ctx); err != nil {
		t.Fatalf("restore: %v", err)
	}
	a.restoreQOS() // as Run does
	r := &agentRun{a: a, snaps: make(chan source.Snapshot, 1), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.loop(ctx, r.snaps) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends the agent as SIGTERM does, and waits for it.
func (r *agentRun) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("agent loop: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("agent did not stop within a minute")
	}
}

func (r *agentRun) desire(pods ...*corev1.Pod) { r.snaps <- source.Snapshot{Pods: pods} }

func pod(t *testing.T, manifest string) *corev1.Pod {
	t.Helper()
	p, err := spec.Parse([]byte(manifest), spec.Source{Path: "/m/" + t.Name() + ".yaml", NodeName: "node-a"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

func simplePod(t *testing.T, name, restart string) *corev1.Pod {
	return pod(t, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  restartPolicy: %s
  containers:
  - {name: app, image: busybox}
`, name, restart))
}

// waitFor waits until cond holds, re-checking at every change the agent
// announces (and every 20 ms, for changes that are the runtime's alone).
func (r *agentRun) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	changed, cancel := r.a.watchers.subscribe()
	defer cancel()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline:
			var calls []string
			if rt, ok := r.a.rt.(*runtimetest.Runtime); ok { // not with metrics on: then it is wrapped
				calls = rt.Calls()
			}
			t.Fatalf("timed out waiting for %s; runtime calls: %v", what, calls)
		}
	}
}

// status is the status the API shows of the pod named name (the newest copy).
func (r *agentRun) status(name string) (corev1.PodStatus, bool) {
	var st corev1.PodStatus
	found := false
	for _, p := range (apiBackend{r.a}).Pods() {
		if p.Name == name && p.DeletionTimestamp == nil {
			st, found = p.Status, true
		}
	}
	return st, found
}

func (r *agentRun) running(name string, restarts int32) func() bool {
	return func() bool {
		st, ok := r.status(name)
		if !ok || st.Phase != corev1.PodRunning || len(st.ContainerStatuses) == 0 {
			return false
		}
		for _, cs := range st.ContainerStatuses {
			if cs.State.Running == nil || !cs.Ready || cs.RestartCount != restarts {
				return false
			}
		}
		return true
	}
}

func count(calls []string, call string) int {
	n := 0
	for _, c := range calls {
		if c == call {
			n++
		}
	}
	return n
}

func (r *agentRun) eventCount(reason string) int {
	n := 0
	for _, e := range r.a.events.List("") {
		if e.Reason == reason {
			n += int(max(e.Count, 1))
		}
	}
	return n
}

func (r *agentRun) hasEvent(reason, message string) bool {
	for _, e := range r.a.events.List("") {
		if e.Reason == reason && strings.Contains(e.Message, message) {
			return true
		}
	}
	return false
}

func TestAgentCreatesAndDeletesPods(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	p := simplePod(t, "web", "Always")
	id := runtime.MonitorID(string(p.UID), "app")
	r.desire(p)
	r.waitFor(t, "web running", r.running("web", 0))
	if !n.rt.HasSandbox(string(p.UID)) {
		t.Fatal("no sandbox for a running pod")
	}

	r.desire()
	r.waitFor(t, "web gone", func() bool { _, ok := r.status("web"); return !ok && !n.rt.HasSandbox(string(p.UID)) })
	calls := n.rt.Calls()
	want := []string{"EnsureSandbox " + string(p.UID), "Start " + id, "Stop " + id, "Remove " + id, "RemoveSandbox " + string(p.UID)}
	var got []string
	for _, c := range calls {
		if slices.Contains(want, c) {
			got = append(got, c)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("calls: got %v, want %v in this order", got, want)
	}
}

// The QoS tiers are set for every pod the agent has: before a new pod's
// sandbox is made, after a pod is removed, and for the pods adopted at start.
func TestAgentUpdatesQOSTiers(t *testing.T) {
	n := newNode(t)
	r := n.start(true)
	web, db := simplePod(t, "web", "Always"), simplePod(t, "db", "Always")
	qos := func(want ...*corev1.Pod) func() bool {
		return func() bool {
			var uids []string
			for _, p := range want {
				uids = append(uids, string(p.UID))
			}
			got := n.rt.QOSPods()
			slices.Sort(got)
			slices.Sort(uids)
			return slices.Equal(got, uids)
		}
	}
	r.desire(web)
	r.waitFor(t, "web running", r.running("web", 0))
	r.desire(web, db)
	r.waitFor(t, "db running", r.running("db", 0))
	r.waitFor(t, "the tiers set for web and db", qos(web, db))
	r.desire(db)
	r.waitFor(t, "the tiers set for db alone", qos(db))
	r.stop(t)

	_ = n.rt.UpdateQOSCgroups(nil)
	second := n.start(true)
	second.waitFor(t, "the tiers set for the adopted db", qos(db))
}

func TestAgentReplacesAChangedPod(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	old := simplePod(t, "web", "Always")
	r.desire(old)
	r.waitFor(t, "web running", r.running("web", 0))

	changed := simplePod(t, "web", "OnFailure")
	if changed.UID == old.UID {
		t.Fatal("a changed manifest must have a new UID")
	}
	r.desire(changed)
	newID := runtime.MonitorID(string(changed.UID), "app")
	oldID := runtime.MonitorID(string(old.UID), "app")
	r.waitFor(t, "the new web running", func() bool {
		return r.running("web", 0)() && count(n.rt.Calls(), "Start "+newID) == 1
	})
	calls := n.rt.Calls()
	// The old copy is gone before the new one starts.
	if slices.Index(calls, "Remove "+oldID) > slices.Index(calls, "Start "+newID) {
		t.Fatalf("the new pod started before the old one was removed: %v", calls)
	}
}

func TestAgentInitContainersRunFirst(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	p := pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: init}
spec:
  initContainers:
  - {name: setup, image: busybox}
  containers:
  - {name: app, image: busybox}
`)
	setup, app := runtime.MonitorID(string(p.UID), "setup"), runtime.MonitorID(string(p.UID), "app")
	r.desire(p)
	r.waitFor(t, "the init container started", func() bool { return count(n.rt.Calls(), "Start "+setup) == 1 })
	if count(n.rt.Calls(), "Start "+app) != 0 {
		t.Fatal("the app container started while the init container runs")
	}
	n.rt.Exit(setup, 0)
	r.waitFor(t, "the pod running", r.running("init", 0))
	if got := count(n.rt.Calls(), "Start "+setup); got != 1 {
		t.Fatalf("the init container started %d times", got)
	}
}

func TestAgentReportsRestartsAndFailures(t *testing.T) {
	for _, tc := range []struct {
		policy    string
		code      int
		wantPhase corev1.PodPhase
		restarts  int32
	}{
		{"Always", 1, corev1.PodRunning, 1},
		{"Always", 0, corev1.PodRunning, 1},
		{"OnFailure", 1, corev1.PodRunning, 1},
		{"OnFailure", 0, corev1.PodSucceeded, 0},
		{"Never", 1, corev1.PodFailed, 0},
	} {
		t.Run(fmt.Sprintf("%s exit %d", tc.policy, tc.code), func(t *testing.T) {
			n := newNode(t)
			r := n.start(false)
			p := simplePod(t, "job", tc.policy)
			id := runtime.MonitorID(string(p.UID), "app")
			r.desire(p)
			r.waitFor(t, "job running", r.running("job", 0))
			n.rt.Exit(id, tc.code)
			r.waitFor(t, "job "+string(tc.wantPhase), func() bool {
				st, _ := r.status("job")
				return st.Phase == tc.wantPhase && len(st.ContainerStatuses) == 1 && st.ContainerStatuses[0].RestartCount == tc.restarts
			})
			if got := count(n.rt.Calls(), "Start "+id); got != 1 {
				t.Fatalf("agentd started the container %d times; restarts are the monitor's", got)
			}
			// Started once by agentd, then once per restart by the monitor.
			r.waitFor(t, "the Started events", func() bool { return r.eventCount("Started") == 1+int(tc.restarts) })
		})
	}
}

func TestAgentMonitorLost(t *testing.T) {
	for _, tc := range []struct {
		policy      string
		wantRestart bool
	}{
		{"Always", true},
		{"OnFailure", true}, // the lost run is recorded as killed (137)
		{"Never", false},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			n := newNode(t)
			r := n.start(false)
			p := simplePod(t, "lost", tc.policy)
			id := runtime.MonitorID(string(p.UID), "app")
			r.desire(p)
			r.waitFor(t, "lost running", r.running("lost", 0))
			n.rt.KillMonitor(id)
			n.rt.Relist()
			r.waitFor(t, "the clean-up", func() bool { return count(n.rt.Calls(), "Cleanup "+id) == 1 })
			r.waitFor(t, "a MonitorLost event", func() bool { return r.hasEvent("MonitorLost", "died") })
			if tc.wantRestart {
				r.waitFor(t, "a fresh monitor", func() bool { return count(n.rt.Calls(), "Start "+id) == 2 })
				r.waitFor(t, "lost running again", r.running("lost", 0))
				return
			}
			r.waitFor(t, "lost failed", func() bool { st, _ := r.status("lost"); return st.Phase == corev1.PodFailed })
			if got := count(n.rt.Calls(), "Start "+id); got != 1 {
				t.Fatalf("a Never pod's lost container was started %d times", got)
			}
		})
	}
}

func TestAgentWaitsForItsImage(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	p := pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: noimage}
spec:
  containers:
  - {name: app, image: missing, imagePullPolicy: Never}
`)
	r.desire(p)
	r.waitFor(t, "ErrImageNeverPull", func() bool {
		st, _ := r.status("noimage")
		if len(st.ContainerStatuses) == 0 {
			return false
		}
		w := st.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "ErrImageNeverPull"
	})
	// As kubelet: the reason's own event says what happened, then Failed names
	// the reason; no message repeats its reason or the waiting reason.
	r.waitFor(t, "the ErrImageNeverPull and Failed events", func() bool {
		return r.eventCount("ErrImageNeverPull") > 0 && r.hasEvent("Failed", "Error: ErrImageNeverPull")
	})
	st, _ := r.status("noimage")
	if w := st.ContainerStatuses[0].State.Waiting; strings.Contains(w.Message, "ErrImageNeverPull") || !strings.Contains(w.Message, `image "missing" is not present`) {
		t.Errorf("waiting message: %q", w.Message)
	}
	for _, e := range r.a.events.List("") {
		if strings.Count(e.Message, "ErrImageNeverPull") > 1 || (e.Reason != "Failed" && strings.Contains(e.Message, e.Reason)) {
			t.Errorf("event %s repeats a reason: %q", e.Reason, e.Message)
		}
	}
	n.images.add("missing")
	r.a.resetImageRetries()
	r.waitFor(t, "noimage running", r.running("noimage", 0))
}

func TestAgentAdoptsWithLiveRestore(t *testing.T) {
	n := newNode(t)
	first := n.start(true)
	p := simplePod(t, "kept", "Always")
	id := runtime.MonitorID(string(p.UID), "app")
	first.desire(p)
	first.waitFor(t, "kept running", first.running("kept", 0))
	first.stop(t)
	if got := count(n.rt.Calls(), "Stop "+id); got != 0 {
		t.Fatalf("live restore on: agentd stopped the container %d times", got)
	}
	// While agentd is away, the container restarts.
	n.rt.Exit(id, 1)

	second := n.start(true)
	// Adopted before the manifests are read: nothing is killed while the
	// desired state is unknown.
	second.waitFor(t, "kept adopted", second.running("kept", 1))
	second.desire(p)
	second.waitFor(t, "kept running", second.running("kept", 1))
	calls := n.rt.Calls()
	if got := count(calls, "Start "+id); got != 1 {
		t.Fatalf("the adopted container was started %d times, want once (by the first agent)", got)
	}
}

func TestAgentStopsPodsWithoutLiveRestore(t *testing.T) {
	n := newNode(t)
	first := n.start(false)
	p := simplePod(t, "fresh", "Always")
	id := runtime.MonitorID(string(p.UID), "app")
	first.desire(p)
	first.waitFor(t, "fresh running", first.running("fresh", 0))
	first.stop(t)
	if got := count(n.rt.Calls(), "Remove "+id); got != 1 {
		t.Fatalf("live restore off: the container was removed %d times at stop, want 1", got)
	}

	second := n.start(false)
	second.desire(p)
	second.waitFor(t, "fresh running again", func() bool {
		return second.running("fresh", 0)() && count(n.rt.Calls(), "Start "+id) == 2
	})
}

func TestAgentRestoreFinishesARemoval(t *testing.T) {
	n := newNode(t)
	first := n.start(true)
	p := simplePod(t, "going", "Always")
	first.desire(p)
	first.waitFor(t, "going running", first.running("going", 0))
	first.stop(t)
	// An agentd that died while removing the pod recorded that first.
	sp, err := loadPod(n.rt.SandboxDir(string(p.UID)))
	if err != nil {
		t.Fatal(err)
	}
	sp.Terminating = true
	if err := savePod(n.rt.SandboxDir(string(p.UID)), sp); err != nil {
		t.Fatal(err)
	}
	second := n.start(true)
	if n.rt.HasSandbox(string(p.UID)) {
		t.Fatal("restore adopted a pod whose removal was under way")
	}
	// Still desired: created afresh.
	second.desire(p)
	second.waitFor(t, "going running again", second.running("going", 0))
}

// TestAgentRestoreRefusesForeignRecords: a pod record (under run-dir, so
// possibly planted) whose sandbox names paths agentd would not have given the
// pod, whose spec the manifest's validation refuses, or that is another pod's, is
// not adopted: the pod is removed by its uid, and created afresh if desired.
func TestAgentRestoreRefusesForeignRecords(t *testing.T) {
	for name, change := range map[string]func(*savedPod){
		"volume is the host root": func(sp *savedPod) { sp.Sandbox.Volumes = map[string]string{"x": "/"} },
		"sandbox elsewhere":       func(sp *savedPod) { sp.Sandbox.Dir = "/etc" },
		"spec the manifest check refuses": func(sp *savedPod) {
			sp.Pod.Spec.Containers[0].Image = "../x"
		},
		"another pod's record": func(sp *savedPod) { sp.Pod.UID = "other" },
	} {
		t.Run(name, func(t *testing.T) {
			n := newNode(t)
			first := n.start(true)
			p := simplePod(t, "planted", "Always")
			id := runtime.MonitorID(string(p.UID), "app")
			first.desire(p)
			first.waitFor(t, "planted running", first.running("planted", 0))
			first.stop(t)
			dir := n.rt.SandboxDir(string(p.UID))
			sp, err := loadPod(dir)
			if err != nil {
				t.Fatal(err)
			}
			change(sp)
			if err := savePod(dir, sp); err != nil {
				t.Fatal(err)
			}
			second := n.start(true)
			if n.rt.HasSandbox(string(p.UID)) {
				t.Fatal("restore adopted a pod from a record agentd did not make")
			}
			second.desire(p)
			second.waitFor(t, "planted created afresh", func() bool {
				return second.running("planted", 0)() && count(n.rt.Calls(), "Start "+id) == 2
			})
		})
	}
}

func TestAgentDeleteUnmanagedGoesThroughTheWorker(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	p := simplePod(t, "old", "Always")
	r.desire(p)
	r.waitFor(t, "old running", r.running("old", 0))
	r.a.mu.Lock()
	pr := r.a.pods[p.UID]
	pr.unmanaged = []string{runtime.MonitorID(string(p.UID), "app")}
	r.a.mu.Unlock()
	if err := (apiBackend{r.a}).DeleteUnmanaged(p.Namespace, "old"); err != nil {
		t.Fatal(err)
	}
	// Deleted, then started again from its manifest.
	r.waitFor(t, "old restarted from its manifest", func() bool {
		return r.running("old", 0)() && count(n.rt.Calls(), "Start "+runtime.MonitorID(string(p.UID), "app")) == 2
	})
	if err := (apiBackend{r.a}).DeleteUnmanaged(p.Namespace, "nosuch"); err == nil || !strings.Contains(err.Error(), "no unmanaged pod") {
		t.Fatalf("DeleteUnmanaged of an unknown pod: %v", err)
	}
}

func TestAgentStartFailureWaitsToRetry(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	p := simplePod(t, "broken", "Always")
	id := runtime.MonitorID(string(p.UID), "app")
	n.rt.FailStart(id, errors.New("no such runtime"))
	r.desire(p)
	r.waitFor(t, "CreateContainerError", func() bool {
		st, _ := r.status("broken")
		if len(st.ContainerStatuses) == 0 {
			return false
		}
		w := st.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "CreateContainerError" && strings.Contains(w.Message, "no such runtime")
	})
	// One attempt, then a wait (reconcile.CreateRetryDelay), not a hot loop.
	if got := count(n.rt.Calls(), "Start "+id); got != 1 {
		t.Fatalf("Start was tried %d times at once", got)
	}
}
