package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/reconcile"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/state"
	"github.com/agentd-project/agentd/cri/record"
	"github.com/agentd-project/agentd/spec"
)

// syncPod is a pod worker's work (syncFunc): kill the pod when asked, else
// clean up after its lost monitors and take the next step Plan gives for it.
func (a *Agent) syncPod(ctx context.Context, uid types.UID, u podUpdate) bool {
	if u.kill {
		a.mu.Lock()
		pr := a.pods[uid]
		a.mu.Unlock()
		if pr != nil {
			a.killPod(pr.pod, u.reason)
		}
		a.changed(uid)
		a.poke()
		return false
	}
	a.handleLost(context.WithoutCancel(ctx), uid)
	act, ok := a.nextAction(uid)
	if !ok {
		return false
	}
	a.log.V(1).Info("Applying action", "action", act.String())
	progressed := a.apply(ctx, act)
	a.changed(uid)
	a.poke() // a pod removed may let another (its new copy) start
	return progressed && act.Kind != reconcile.KillPod
}

// nextAction is the first action Plan gives for one pod now. A pod about to be
// created gets its record here, unless collectOrphans is sweeping its leftovers.
func (a *Agent) nextAction(uid types.UID) (reconcile.Action, bool) {
	for _, act := range a.plan() {
		if act.UID != uid {
			continue
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.pods[uid] == nil {
			if a.sweeping[uid] {
				return reconcile.Action{}, false
			}
			a.pods[uid] = &podRecord{pod: act.Pod, containers: map[string]*ctrRecord{}, startTime: time.Now()}
		}
		return act, true
	}
	return reconcile.Action{}, false
}

// apply carries out one action; it says whether it made progress (a failure
// that would fail again at once waits for the loop's next round instead).
func (a *Agent) apply(ctx context.Context, act reconcile.Action) bool {
	switch act.Kind {
	case reconcile.CreateSandbox:
		return a.createSandbox(act.Pod)
	case reconcile.StartContainer:
		a.startContainer(ctx, act.Pod, act.Container, act.Init)
		return true
	case reconcile.StopSidecars:
		a.stopSidecars(act.Pod)
		return true
	case reconcile.KillPod:
		a.killPod(act.Pod, act.Reason)
	}
	return false
}

func (a *Agent) createSandbox(pod *corev1.Pod) bool {
	// The pod counts in its QoS tier's shares before it has a cgroup, as under kubelet.
	a.updateQOS("")
	sb, err := a.rt.EnsureSandbox(pod)
	if err != nil {
		a.log.Error(err, "Could not create pod sandbox", "pod", klog(pod))
		a.events.Eventf(state.PodObject(pod, ""), state.Warning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		return false
	}
	// From here until pod.json is written, the sandbox directory without it is
	// the record: a restarted agentd removes such a sandbox (network included)
	// and creates it again.
	crashpoint.Hit("sandbox-created")
	if n := a.network(); n != nil && !pod.Spec.HostNetwork {
		ip, err := setupPodNetwork(context.Background(), n, pod, sb.NetNS)
		if err != nil {
			a.log.Error(err, "Could not set up pod network", "pod", klog(pod))
			a.events.Eventf(state.PodObject(pod, ""), state.Warning, "FailedCreatePodSandBox", "Failed to set up pod network: %v", err)
			a.rt.RemoveSandbox(string(pod.UID))
			return false
		}
		sb.PodIP = ip
		crashpoint.Hit("sandbox-network-added")
	}
	if err := savePod(sb.Dir, &savedPod{Pod: pod, Sandbox: sb, Started: time.Now()}); err != nil {
		// Without its record a restarted agentd could not adopt the pod, only
		// remove it: better now than with containers running.
		a.log.Error(err, "Could not record pod", "pod", klog(pod))
		a.events.Eventf(state.PodObject(pod, ""), state.Warning, "FailedCreatePodSandBox", "Failed to record pod sandbox: %v", err)
		a.teardownSandbox(context.Background(), pod.UID, sb.NetNS)
		return false
	}
	crashpoint.Hit("sandbox-recorded")
	a.mu.Lock()
	if pr := a.pods[pod.UID]; pr != nil {
		pr.sandbox = sb
		pr.pod = pod
	}
	a.mu.Unlock()
	return true
}

// podFile records, in the sandbox dir, the pod as started, so an agent that
// restarts can adopt it (live restore) or tear it down.
const podFile = "pod.json"

type savedPod struct {
	Pod     *corev1.Pod      `json:"pod"`
	Sandbox *runtime.Sandbox `json:"sandbox"`
	Started time.Time        `json:"started"`
	// Terminating is recorded before a pod's containers are stopped: a restarted
	// agentd finishes the removal instead of adopting a pod whose containers
	// were stopped for good, which nothing would start again.
	Terminating bool `json:"terminating,omitempty"`
	// CRI is set in the record of a sandbox a CRI client made; Pod is then
	// nil: it is rebuilt from the record (record.SandboxPod).
	CRI *record.Sandbox `json:"cri,omitempty"`
}

func savePod(dir string, sp *savedPod) error {
	return atomicfile.WriteJSON(filepath.Join(dir, podFile), sp)
}

func loadPod(dir string) (*savedPod, error) {
	data, err := os.ReadFile(filepath.Join(dir, podFile))
	if err != nil {
		return nil, err
	}
	var sp savedPod
	if err := json.Unmarshal(data, &sp); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, podFile), err)
	}
	return &sp, nil
}

func containerSpec(pod *corev1.Pod, name string) (*corev1.Container, bool) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i], true
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], false
		}
	}
	return nil, false
}

func (a *Agent) startContainer(ctx context.Context, pod *corev1.Pod, name string, isInit bool) {
	c, _ := containerSpec(pod, name)
	obj := state.PodObject(pod, name)
	a.mu.Lock()
	pr := a.pods[pod.UID]
	if pr == nil || pr.sandbox == nil {
		a.mu.Unlock()
		return
	}
	sb := pr.sandbox
	cr := pr.containers[name]
	if cr == nil {
		cr = &ctrRecord{id: runtime.MonitorID(string(pod.UID), name)}
		pr.containers[name] = cr
	}
	a.mu.Unlock()

	fail := func(reason string, err error) {
		a.mu.Lock()
		cr.retryAt = reconcile.CreateRetryAt(time.Now())
		a.mu.Unlock()
		a.status.SetWaiting(cr.id, reason, err.Error())
		a.events.Event(obj, state.Warning, "Failed", "Error: "+err.Error())
	}
	// The pull, on the pod worker's context: the pod's removal or agentd's
	// stop ends it. It holds no lock of the agent's.
	img, failure := a.imageMgr.ensureImage(ctx, pod, c)
	if failure != nil {
		if failure.reason == "" {
			return // cancelled: the pod is going away, or agentd is stopping
		}
		a.mu.Lock()
		cr.retryAt = failure.retryAt
		a.mu.Unlock()
		a.status.SetWaiting(cr.id, failure.reason, failure.message)
		a.events.Event(obj, state.Warning, "Failed", "Error: "+failure.reason)
		return
	}
	defer a.startingImage(img.ID)()
	// From here on the start is not cancelled midway: a container half made
	// is worse than one made and then stopped by the kill that follows.
	ctx = context.WithoutCancel(ctx)
	cfg, err := runtime.ContainerConfig(pod, c, isInit, img, sb, a.rt.Settings())
	if err != nil {
		fail("CreateContainerConfigError", err)
		return
	}
	_, err = a.rt.Start(ctx, cfg)
	crashpoint.Hit("container-started")
	if errors.Is(err, runtime.ErrMonitorAlive) {
		// A monitor of this container runs already (one an earlier agentd
		// started): it is adopted, not duplicated.
		a.log.Info("A monitor of this container is running already; adopting it", "pod", klog(pod), "container", name)
		a.mu.Lock()
		cr.starting = true
		a.mu.Unlock()
		a.refreshJournal(cfg.ID)
		return
	}
	if err != nil && !errors.Is(err, protocol.ErrStartFailed) {
		fail("CreateContainerError", err)
		return
	}
	a.mu.Lock()
	cr.retryAt = time.Time{}
	a.mu.Unlock()
	a.status.SetCreated(cr.id, img.ID)
	a.events.Eventf(obj, state.Normal, "Created", "Created container %s", name)
	if err != nil {
		a.events.Eventf(obj, state.Warning, "Failed", "Error: %v", err)
	} else {
		a.events.Eventf(obj, state.Normal, "Started", "Started container %s", name)
	}
	a.refreshJournal(cfg.ID)
	if err == nil {
		a.afterStart(pod, c, cr)
	}
}

// Waiting reasons of a container agentd could not start, kubelet's.
const (
	reasonErrImageNeverPull = "ErrImageNeverPull"
	reasonErrImagePull      = "ErrImagePull"
)

// afterStart runs the postStart hook and starts the container's probes.
func (a *Agent) afterStart(pod *corev1.Pod, c *corev1.Container, cr *ctrRecord) {
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if msg, err := a.runHook(context.Background(), pod, c, cr.id, c.Lifecycle.PostStart); err != nil {
			a.events.Eventf(state.PodObject(pod, c.Name), state.Warning, "FailedPostStartHook", "PostStartHook failed: %v %s", err, msg)
			// As kubelet: the Killing event's message is the reason itself.
			a.restartContainer(pod, c, cr, spec.TerminationGracePeriod(pod), "FailedPostStartHook")
		}
	}
	a.startProbes(pod, c, cr, time.Now())
}

// killPod stops every container of a pod in parallel within its grace period
// (preStop hooks first; sidecars after the app containers, in reverse order),
// then removes its monitors, network and sandbox.
func (a *Agent) killPod(pod *corev1.Pod, why string) {
	a.mu.Lock()
	pr := a.pods[pod.UID]
	if pr == nil {
		a.mu.Unlock()
		return
	}
	pr.terminating = true
	pr.deleted = time.Now()
	type target struct {
		name string
		id   string
	}
	var targets []target
	for name, c := range pr.containers {
		targets = append(targets, target{name, c.id})
	}
	pr.stopProbes()
	sb := pr.sandbox
	started := pr.startTime
	a.mu.Unlock()
	a.changed(pod.UID)
	if sb != nil {
		if err := savePod(sb.Dir, &savedPod{Pod: pod, Sandbox: sb, Started: started, Terminating: true}); err != nil {
			a.log.Error(err, "Could not record that the pod is being removed", "pod", klog(pod))
		}
	}
	crashpoint.Hit("pod-kill-recorded")

	grace := spec.TerminationGracePeriod(pod)
	order := terminationOrder(pod)
	done := map[string]chan struct{}{}
	for _, t := range targets {
		done[t.name] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func(t target) {
			defer wg.Done()
			defer close(done[t.name])
			c, _ := containerSpec(pod, t.name)
			// A sidecar gets TERM once the containers it outlives are gone, or
			// its grace period is over.
			if err := a.killContainer(pod, c, t.name, t.id, grace, "", true, waitFor(order[t.name], done)); err != nil {
				a.log.Error(err, "Could not stop container", "pod", klog(pod), "container", t.name)
			}
			if err := a.rt.Remove(t.id); err != nil {
				a.log.Error(err, "Could not remove container", "pod", klog(pod), "container", t.name)
			}
		}(t)
	}
	wg.Wait()
	crashpoint.Hit("pod-containers-stopped")
	netns := ""
	if sb != nil {
		netns = sb.NetNS
	}
	a.teardownSandbox(context.Background(), pod.UID, netns)
	a.mu.Lock()
	delete(a.pods, pod.UID)
	a.mu.Unlock()
	a.imageMgr.forgetPod(pod.UID)
	for _, t := range targets {
		a.status.Remove(t.id)
	}
	a.log.Info("Pod stopped", "pod", klog(pod), "reason", why)
	a.watchers.notify()
}

// minGracePeriod is the least time a container gets between the stop signal
// and KILL, whatever its grace period and however much of it the preStop hook
// used: kubelet's minimumGracePeriodInSeconds.
const minGracePeriod = 2 * time.Second

// stopSidecars stops a pod's running sidecars for good, as kubelet does once
// its app containers have all exited for good: preStop hooks, then TERM to the
// last sidecar first, within the pod's grace period. Their monitors stay, with
// their journals, for the pod's status.
func (a *Agent) stopSidecars(pod *corev1.Pod) {
	a.mu.Lock()
	pr := a.pods[pod.UID]
	if pr == nil || pr.terminating {
		a.mu.Unlock()
		return
	}
	ids := map[string]string{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if cr := pr.containers[c.Name]; cr != nil && spec.IsSidecar(c) {
			ids[c.Name] = cr.id
			if cr.probeCancel != nil {
				cr.probeCancel()
			}
		}
	}
	a.mu.Unlock()
	a.log.Info("App containers exited; stopping the sidecars", "pod", klog(pod))
	grace := spec.TerminationGracePeriod(pod)
	order := terminationOrder(pod)
	done := map[string]chan struct{}{}
	for name := range ids {
		done[name] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for name, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[name])
			c, _ := containerSpec(pod, name)
			if err := a.killContainer(pod, c, name, id, grace, "", true, waitFor(order[name], done)); err != nil {
				a.log.Error(err, "Could not stop sidecar", "pod", klog(pod), "container", name)
			}
		}()
	}
	wg.Wait()
}

// waitFor returns a killContainer waitTurn that waits until the containers
// named in before are done (their channels in done closed; a name without one
// is not waited for), or the deadline.
func waitFor(before []string, done map[string]chan struct{}) func(time.Time) {
	return func(deadline time.Time) {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		for _, name := range before {
			if ch := done[name]; ch != nil {
				select {
				case <-ch:
				case <-timer.C:
					return
				}
			}
		}
	}
}

// terminationOrder says, by container name, which containers must be gone
// before a container of pod gets TERM (kubelet's terminationOrdering): a
// sidecar outlives the app containers and the sidecars after it; the others
// wait for nothing.
func terminationOrder(pod *corev1.Pod) map[string][]string {
	order := map[string][]string{}
	var after []string // what the sidecar being looked at outlives
	for _, c := range pod.Spec.Containers {
		after = append(after, c.Name)
	}
	for i := len(pod.Spec.InitContainers) - 1; i >= 0; i-- {
		c := &pod.Spec.InitContainers[i]
		if spec.IsSidecar(c) {
			order[c.Name] = slices.Clone(after)
			after = append(after, c.Name)
		}
	}
	return order
}

// killContainer stops one container as kubelet's killContainer does, whether
// the pod is being removed (forGood: its monitor then stops for good) or a
// liveness or startup probe or the postStart hook failed (its monitor then
// applies the restart policy): if it runs, a Killing event (message, else
// "Stopping container <name>") and its preStop hook within grace, at most once
// per run of the container however many kills overlap; then the stop signal,
// and KILL after what is left of grace counted as kubelet counts it
// (stopGrace). waitTurn, if not nil, is waited for between the hook and the
// signal, until at most the end of what is left of grace.
func (a *Agent) killContainer(pod *corev1.Pod, c *corev1.Container, name, id string, grace time.Duration, message string, forGood bool, waitTurn func(deadline time.Time)) error {
	// Kubelet's grace is int64 seconds; what is left of it after the hook and the
	// wait for its turn too.
	left := grace.Truncate(time.Second)
	m := a.rt.Inspect(context.Background(), id)
	if m.State == runtime.MonitorAlive && m.Journal != nil && m.Journal.State == protocol.StateRunning {
		if message == "" {
			message = fmt.Sprintf("Stopping container %s", name)
		}
		a.events.Eventf(state.PodObject(pod, name), state.Normal, "Killing", "%s", message)
		if hasPreStop(c) && left > 0 {
			start := time.Now()
			a.preStopOnce(pod, c, id, runKeyOf(m.Journal), left, start.Add(left))
			left = stopGrace(left, time.Since(start))
		}
	}
	if waitTurn != nil && left > 0 {
		start := time.Now()
		waitTurn(start.Add(left))
		left = stopGrace(left, time.Since(start))
	}
	left = max(left, minGracePeriod)
	ctx, cancel := context.WithTimeout(context.Background(), left+30*time.Second)
	defer cancel()
	var j *protocol.Journal
	var err error
	if forGood {
		j, err = a.rt.Stop(ctx, id, left)
	} else {
		j, err = a.rt.Kill(ctx, id, left)
	}
	if j != nil {
		a.applyJournal(id, j) // planned on at once, not after the runtime's event
	}
	return err
}

// stopGrace is what is left of grace (whole seconds) after a step of
// killContainer that took took, counted as kubelet's killContainer counts it:
// in whole seconds, the step's time truncated (a hook of 2.9 s uses 2 s). It
// may be zero or negative; minGracePeriod is applied last, before the signal.
func stopGrace(grace, took time.Duration) time.Duration {
	return grace.Truncate(time.Second) - took.Truncate(time.Second)
}

func hasPreStop(c *corev1.Container) bool {
	return c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil
}

// runKeyOf names the current run of the container whose journal is j ("" when
// it has none): a preStop hook runs once per run.
func runKeyOf(j *protocol.Journal) string {
	if cur := j.Current(); cur != nil {
		return runKey(cur)
	}
	return ""
}

// preStopOnce runs the container's preStop hook for run unless it ran, or
// runs, for that run already (a probe's kill and the pod's removal can
// overlap; kubelet runs the hook once): then it waits for that hook to finish,
// until at most deadline, so that the stop signal does not cut it short.
func (a *Agent) preStopOnce(pod *corev1.Pod, c *corev1.Container, id, run string, grace time.Duration, deadline time.Time) {
	a.mu.Lock()
	_, _, cr := a.containerByID(id)
	var first bool
	var done chan struct{}
	if cr != nil {
		first = cr.preStop == nil || cr.preStop.run != run
		if first {
			cr.preStop = &preStopRun{run: run, done: make(chan struct{})}
		}
		done = cr.preStop.done
	}
	a.mu.Unlock()
	if cr != nil && !first {
		a.log.V(2).Info("PreStop hook of this run of the container ran already; not run again", "pod", klog(pod), "container", c.Name)
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
		}
		return
	}
	if done != nil {
		defer close(done)
	}
	a.runPreStop(pod, c, id, grace, deadline)
}

// restartContainer kills a container's current run through killContainer (its
// monitor then restarts it, or not, by its restart policy), unless a kill of
// it is under way already. It returns at once; the kill goes on.
func (a *Agent) restartContainer(pod *corev1.Pod, c *corev1.Container, cr *ctrRecord, grace time.Duration, message string) {
	a.mu.Lock()
	if cr.killing {
		a.mu.Unlock()
		return
	}
	cr.killing = true
	a.mu.Unlock()
	go func() {
		if err := a.killContainer(pod, c, c.Name, cr.id, grace, message, false, nil); err != nil {
			a.log.Error(err, "Could not kill container", "pod", klog(pod), "container", c.Name)
		}
		a.mu.Lock()
		cr.killing = false
		a.mu.Unlock()
	}()
}

// runPreStop runs a container's preStop hook, if it has one, until deadline (as
// kubelet: not at all without a grace period).
func (a *Agent) runPreStop(pod *corev1.Pod, c *corev1.Container, id string, grace time.Duration, deadline time.Time) {
	if !hasPreStop(c) || grace <= 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	msg, err := a.runHook(ctx, pod, c, id, c.Lifecycle.PreStop)
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		a.log.Info("PreStop hook not completed in grace period", "pod", klog(pod), "container", c.Name, "gracePeriod", grace)
	default:
		a.events.Eventf(state.PodObject(pod, c.Name), state.Warning, "FailedPreStopHook", "PreStopHook failed: %v %s", err, msg)
	}
}

// removalTimeout bounds the parts of a pod's removal that go on after agentd
// was told to stop (beyond the containers' grace periods).
const removalTimeout = time.Minute

// teardownSandbox detaches a pod from the network (netns "" for a host-network
// pod) and removes its sandbox, volumes and cgroup. Each step is idempotent, so
// a removal that agentd's crash interrupted is finished by running it again.
func (a *Agent) teardownSandbox(ctx context.Context, uid types.UID, netns string) {
	if n := a.network(); n != nil && netns != "" {
		// Not cut short by agentd's shutdown: the namespace is unpinned next,
		// and a detach that did not finish would leave the pod's address and
		// rules behind.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removalTimeout)
		defer cancel()
		if err := n.Teardown(ctx, string(uid), netns); err != nil {
			a.log.Error(err, "Could not tear down pod network", "uid", uid)
		}
		crashpoint.Hit("pod-network-removed")
	}
	a.rt.RemoveSandbox(string(uid))
	a.updateQOS(uid)
}

// updateQOS sets the QoS tiers' cgroups (their cpu.shares) for the pods agentd
// has, but gone, a pod being removed. The lock keeps two updates from writing
// their snapshots out of order.
func (a *Agent) updateQOS(gone types.UID) {
	a.qosMu.Lock()
	defer a.qosMu.Unlock()
	a.mu.Lock()
	pods := make([]*corev1.Pod, 0, len(a.pods))
	for uid, pr := range a.pods {
		if uid != gone {
			pods = append(pods, pr.pod)
		}
	}
	a.mu.Unlock()
	if err := a.rt.UpdateQOSCgroups(pods); err != nil {
		a.log.Error(err, "Could not update QoS cgroups")
	}
}
