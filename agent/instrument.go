package agent

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/metrics"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/reconcile"
	"github.com/agentd-project/agentd/agent/runtime"
)

// The agent's instrumentation (package metrics): Options.Metrics nil (the
// metrics-address setting empty) leaves every hook a no-op. The resource
// readings behind `agentctl top` are there either way.

// hostCgroups reads the containers' cgroups; tests read fixtures instead.
var hostCgroups = metrics.HostCgroupReader

// instrument wires the agent to its metrics; newAgent calls it last.
func (a *Agent) instrument() {
	node, err := metrics.NewNodeReader("/proc")
	if err != nil {
		a.log.Error(err, "Node usage unavailable to the resource metrics")
		node = nil
	}
	a.resources = metrics.NewResources(hostCgroups(), node, a.log.WithName("metrics"))
	m := a.opts.Metrics
	if m == nil {
		return
	}
	a.metrics = m
	a.rt = instrumentedRuntime{Interface: a.rt, m: m}
	a.events.SetObserver(m.Event)
	a.imageMgr.setMetrics(m)
	m.Register(metrics.NewStateCollector(a.podSamples))
	m.Register(metrics.NewClusterCollector(a.clusterSample))
	m.RegisterResource(metrics.NewResourceCollector(a.resources, a.resourceTargets))
}

// podSource is the source label of a pod: cluster for a DaemonSet's, else file.
func podSource(p *corev1.Pod) string {
	if p.Annotations[daemonset.AnnotationDaemonSet] != "" {
		return metrics.SourceCluster
	}
	return metrics.SourceFile
}

// podSamples is the state collector's source: the pods as the API lists them.
func (a *Agent) podSamples() []metrics.PodSample {
	pods := a.sortedPods()
	a.mu.Lock()
	monitors := map[types.UID]map[string]bool{}
	for uid, pr := range a.pods {
		m := map[string]bool{}
		for name, c := range pr.containers {
			m[name] = !c.lost && (c.starting || a.status.Journal(c.id) != nil)
		}
		monitors[uid] = m
	}
	a.mu.Unlock()
	out := make([]metrics.PodSample, 0, len(pods))
	for i := range pods {
		p := &pods[i]
		s := metrics.PodSample{Namespace: p.Namespace, Name: p.Name, Source: podSource(p), Phase: string(p.Status.Phase)}
		for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			st := "waiting"
			switch {
			case cs.State.Running != nil:
				st = "running"
			case cs.State.Terminated != nil:
				st = "terminated"
			}
			s.Containers = append(s.Containers, metrics.ContainerSample{Name: cs.Name, State: st, Restarts: cs.RestartCount,
				Monitor: monitors[p.UID][cs.Name]})
		}
		out = append(out, s)
	}
	return out
}

// resourceTargets are the cgroups of the pods with a sandbox and of their
// running containers, for /metrics/resource and top.
func (a *Agent) resourceTargets() []metrics.PodTarget {
	return a.podTargets("", "")
}

// podTargets is resourceTargets of one pod (name set) or namespace (namespace set).
func (a *Agent) podTargets(namespace, name string) []metrics.PodTarget {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []metrics.PodTarget
	parent := a.rt.Settings().CgroupParent
	for _, pr := range a.pods {
		p := pr.pod
		if pr.sandbox == nil || pr.terminating || (namespace != "" && p.Namespace != namespace) || (name != "" && p.Name != name) {
			continue
		}
		t := metrics.PodTarget{Namespace: p.Namespace, Name: p.Name, Cgroup: runtime.PodCgroup(parent, p)}
		for cname, cr := range pr.containers {
			j := a.status.Journal(cr.id)
			c, _ := containerSpec(p, cname)
			if c == nil || j == nil || j.State != protocol.StateRunning {
				continue
			}
			ct := metrics.ContainerTarget{Name: cname, Cgroup: runtime.Cgroup(c, parent, p).Path}
			if cr.cgroup != "" {
				// Adopted: where its monitor put it; the pod's cgroup holds its containers'.
				ct.Cgroup = cr.cgroup
				t.Cgroup = filepath.Dir(cr.cgroup)
			}
			if cur := j.Current(); cur != nil {
				ct.StartTime = cur.StartedAt
			}
			t.Containers = append(t.Containers, ct)
		}
		out = append(out, t)
	}
	return out
}

// timedSync is a pod worker's sync function that observes how long each step
// takes (agentd_pod_worker_duration_seconds).
func (a *Agent) timedSync(sync syncFunc) syncFunc {
	return func(ctx context.Context, uid types.UID, u podUpdate) bool {
		start := time.Now()
		again := sync(ctx, uid, u)
		op := "sync"
		if u.kill {
			op = "kill"
		}
		a.metrics.PodWorkerDone(op, time.Since(start))
		return again
	}
}

// reconcileDone observes a round of the loop's planning and dispatch begun at start.
func (a *Agent) reconcileDone(start time.Time) {
	if a.metrics != nil {
		now := time.Now()
		a.metrics.ReconcileDone(now.Sub(start), now)
	}
}

// observePodStart observes a pod's start duration the first time all its app
// containers run: from when it was first desired (kubelet: first seen). Pods
// adopted at restore started under an earlier agentd and are not observed.
func (a *Agent) observePodStart(uid types.UID) {
	if a.metrics == nil || uid == "" {
		return
	}
	a.mu.Lock()
	pr := a.pods[uid]
	if pr == nil || pr.startObserved || pr.terminating {
		a.mu.Unlock()
		return
	}
	for _, c := range pr.pod.Spec.Containers {
		cr := pr.containers[c.Name]
		if cr == nil {
			a.mu.Unlock()
			return
		}
		if j := a.status.Journal(cr.id); j == nil || j.State != protocol.StateRunning {
			a.mu.Unlock()
			return
		}
	}
	pr.startObserved = true
	since := pr.startTime
	if t, ok := a.desiredSince[uid]; ok && t.Before(since) {
		since = t
	}
	a.mu.Unlock()
	a.metrics.PodStarted(time.Since(since))
}

// restoreResults counts what restore did with the monitors it found: those of
// adopted pods by reconcile.RestoreContainer's decision, those of dropped pods
// as replaced.
func restoreResults(adopted, dropped []*runtime.Monitor) map[string]int {
	out := map[string]int{}
	for _, m := range adopted {
		switch reconcile.RestoreContainer(monitorFound(m.State), m.Journal) {
		case reconcile.CleanUpLost:
			out[metrics.RestoreLost]++
		case reconcile.LeaveUnmanaged:
			out[metrics.RestoreUnmanaged]++
		default:
			out[metrics.RestoreAdopted]++
		}
	}
	out[metrics.RestoreReplaced] += len(dropped)
	return out
}

// instrumentedRuntime counts the runtime's operations, their errors and
// durations (agentd_runtime_operations_*), kubelet's instrumentedRuntimeService.
// Operation types are named as kubelet's CRI operations where they match.
// ErrMonitorAlive (the monitor is running already; adopted) is an answer, not
// an error.
type instrumentedRuntime struct {
	runtime.Interface
	m *metrics.Metrics
}

var _ runtime.Interface = instrumentedRuntime{}

func (r instrumentedRuntime) done(op string, start time.Time, err error) {
	if errors.Is(err, runtime.ErrMonitorAlive) {
		err = nil
	}
	r.m.RuntimeOperation(op, time.Since(start), err)
}

func (r instrumentedRuntime) EnsureSandbox(pod *corev1.Pod) (*runtime.Sandbox, error) {
	start := time.Now()
	sb, err := r.Interface.EnsureSandbox(pod)
	r.done("run_podsandbox", start, err)
	return sb, err
}

func (r instrumentedRuntime) RemoveSandbox(uid string) {
	start := time.Now()
	r.Interface.RemoveSandbox(uid)
	r.done("remove_podsandbox", start, nil)
}

func (r instrumentedRuntime) UpdateQOSCgroups(pods []*corev1.Pod) error {
	start := time.Now()
	err := r.Interface.UpdateQOSCgroups(pods)
	r.done("update_qos_cgroups", start, err)
	return err
}

func (r instrumentedRuntime) Start(ctx context.Context, cfg *protocol.ContainerConfig) (*runtime.Started, error) {
	start := time.Now()
	s, err := r.Interface.Start(ctx, cfg)
	r.done("start_container", start, err)
	return s, err
}

func (r instrumentedRuntime) Stop(ctx context.Context, id string, grace time.Duration) (*protocol.Journal, error) {
	start := time.Now()
	j, err := r.Interface.Stop(ctx, id, grace)
	r.done("stop_container", start, err)
	return j, err
}

func (r instrumentedRuntime) Kill(ctx context.Context, id string, grace time.Duration) (*protocol.Journal, error) {
	start := time.Now()
	j, err := r.Interface.Kill(ctx, id, grace)
	r.done("kill_container", start, err)
	return j, err
}

func (r instrumentedRuntime) Exec(ctx context.Context, id string, req *protocol.ExecRequest, eio runtime.ExecIO) (int, error) {
	start := time.Now()
	code, err := r.Interface.Exec(ctx, id, req, eio)
	r.done("exec", start, err)
	return code, err
}

func (r instrumentedRuntime) Attach(ctx context.Context, id string, aio runtime.AttachIO) error {
	start := time.Now()
	err := r.Interface.Attach(ctx, id, aio)
	r.done("attach", start, err)
	return err
}

func (r instrumentedRuntime) List(ctx context.Context) ([]*runtime.Monitor, error) {
	start := time.Now()
	ms, err := r.Interface.List(ctx)
	r.done("list_containers", start, err)
	return ms, err
}

func (r instrumentedRuntime) Inspect(ctx context.Context, id string) *runtime.Monitor {
	start := time.Now()
	m := r.Interface.Inspect(ctx, id)
	r.done("container_status", start, nil)
	return m
}

func (r instrumentedRuntime) Cleanup(ctx context.Context, id string) (*protocol.Journal, error) {
	start := time.Now()
	j, err := r.Interface.Cleanup(ctx, id)
	r.done("cleanup_container", start, err)
	return j, err
}

func (r instrumentedRuntime) Remove(id string) error {
	start := time.Now()
	err := r.Interface.Remove(id)
	r.done("remove_container", start, err)
	return err
}
