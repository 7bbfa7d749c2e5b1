// Package reconcile decides, as a pure function, what the agent does to bring the
// pods it runs in line with the pods the manifest directory asks for. Every
// lifecycle decision lives here; agent applies the actions it returns. Nothing
// configures it but its inputs.
package reconcile

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/spec"
)

// ContainerState is what the agent observed of one container's monitor.
type ContainerState struct {
	Exists bool // a monitor was started for it (and not removed)
	// State is the monitor's journal state: protocol.StateCreating, StateRunning, StateBackOff, StateExited.
	State    string
	ExitCode int // of the last exit, when State is Exited
	// RetryAt, when set, is when a failed attempt to create the container (no image,
	// a config error) may be retried.
	RetryAt time.Time
	// Started: it runs and its startup probe, if it has one, passed (a
	// sidecar's, before the next init container starts).
	Started bool
}

// Completed is an init container that ran to success.
func (c ContainerState) Completed() bool {
	return c.Exists && c.State == protocol.StateExited && c.ExitCode == 0
}

// Failed is a container that exited with an error and will not restart.
func (c ContainerState) Failed() bool {
	return c.Exists && c.State == protocol.StateExited && c.ExitCode != 0
}

// PodState is what the agent observed of one pod it runs.
type PodState struct {
	Pod         *corev1.Pod // the spec it runs (as started)
	Sandbox     bool        // sandbox created
	Terminating bool        // being killed
	Containers  map[string]ContainerState
}

// Observed is every pod the agent runs, by UID.
type Observed map[types.UID]*PodState

// Kind names an action.
type Kind string

const (
	// CreateSandbox creates the pod's namespaces, /etc files and volumes.
	CreateSandbox Kind = "CreateSandbox"
	// StartContainer starts one container's monitor.
	StartContainer Kind = "StartContainer"
	// StopSidecars stops a pod's sidecars for good, the last one first, once
	// its app containers have all exited for good; the pod stays, with its
	// final status.
	StopSidecars Kind = "StopSidecars"
	// KillPod stops every container of a pod within its grace period (preStop hooks
	// first), then removes its monitors and sandbox. Logs stay.
	KillPod Kind = "KillPod"
)

// Action is one step of a plan.
type Action struct {
	Kind      Kind
	UID       types.UID
	Pod       *corev1.Pod // the desired pod (CreateSandbox, StartContainer) or the running one (KillPod)
	Container string      // StartContainer
	Init      bool        // StartContainer: an init container
	Reason    string      // why, for logs and events
}

func (a Action) String() string {
	s := fmt.Sprintf("%s %s/%s", a.Kind, a.Pod.Namespace, a.Pod.Name)
	if a.Container != "" {
		s += " container " + a.Container
	}
	return s + ": " + a.Reason
}

// Plan returns the actions that bring observed towards desired, at most one step per
// pod and container (the agent plans again after each step completes). Pods are
// visited in namespace/name order so plans are deterministic.
func Plan(desired []*corev1.Pod, observed Observed, now time.Time) []Action {
	var actions []Action
	want := map[types.UID]*corev1.Pod{}
	byName := map[string]types.UID{}
	for _, p := range desired {
		want[p.UID] = p
		byName[p.Namespace+"/"+p.Name] = p.UID
	}

	// Pods that are no longer desired are killed: removed, or replaced by a
	// changed manifest (a new UID under the same name).
	var gone []*PodState
	for uid, ps := range observed {
		if _, ok := want[uid]; !ok && !ps.Terminating {
			gone = append(gone, ps)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return key(gone[i].Pod) < key(gone[j].Pod) })
	for _, ps := range gone {
		reason := "manifest removed"
		if _, replaced := byName[key(ps.Pod)]; replaced {
			reason = "manifest changed"
		}
		actions = append(actions, Action{Kind: KillPod, UID: ps.Pod.UID, Pod: ps.Pod, Reason: reason})
	}

	// An old copy of a pod (same name, other UID) must be gone before the new one starts.
	oldCopy := map[string]bool{}
	for uid, ps := range observed {
		if _, ok := want[uid]; !ok {
			oldCopy[key(ps.Pod)] = true
		}
	}

	sorted := append([]*corev1.Pod(nil), desired...)
	sort.Slice(sorted, func(i, j int) bool { return key(sorted[i]) < key(sorted[j]) })
	for _, pod := range sorted {
		if oldCopy[key(pod)] {
			continue
		}
		actions = append(actions, planPod(pod, observed[pod.UID], now)...)
	}
	return actions
}

func key(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func planPod(pod *corev1.Pod, ps *PodState, now time.Time) []Action {
	if ps == nil || !ps.Sandbox {
		return []Action{{Kind: CreateSandbox, UID: pod.UID, Pod: pod, Reason: "new pod"}}
	}
	if ps.Terminating {
		return nil
	}
	start := func(name string, init bool, reason string) []Action {
		if c := ps.Containers[name]; !c.RetryAt.IsZero() && now.Before(c.RetryAt) {
			return nil
		}
		return []Action{{Kind: StartContainer, UID: pod.UID, Pod: pod, Container: name, Init: init, Reason: reason}}
	}
	// Once an app container exists the pod is initialized: a sidecar that
	// restarts later holds nothing up. Once they have all exited for good
	// (their monitors applied the pod's policy), the sidecars are stopped, as
	// kubelet does, rather than keep the pod running.
	initialized, appsDone := false, len(pod.Spec.Containers) > 0
	for _, c := range pod.Spec.Containers {
		cs := ps.Containers[c.Name]
		initialized = initialized || cs.Exists
		appsDone = appsDone && cs.Exists && cs.State == protocol.StateExited
	}
	stopSidecars := func(reason string) []Action {
		for i := range pod.Spec.InitContainers {
			c := &pod.Spec.InitContainers[i]
			if cs := ps.Containers[c.Name]; spec.IsSidecar(c) && cs.Exists && cs.State != protocol.StateExited {
				return []Action{{Kind: StopSidecars, UID: pod.UID, Pod: pod, Reason: reason}}
			}
		}
		return nil
	}
	if appsDone {
		return stopSidecars("app containers exited")
	}
	// Init containers run one at a time, in order, each to completion; a
	// sidecar (restartPolicy Always) only until it has started, and then keeps
	// running (its monitor restarts it) beside the others.
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := ps.Containers[c.Name]
		switch {
		case !cs.Exists && spec.IsSidecar(c):
			return start(c.Name, true, "sidecar container")
		case !cs.Exists:
			return start(c.Name, true, "init container")
		case spec.IsSidecar(c) && (cs.Started || initialized):
			continue
		case cs.Completed():
			continue
		case cs.Failed():
			// Failed for good (restartPolicy Never): the pod has failed, and
			// its sidecars are stopped.
			return stopSidecars("init container failed")
		default:
			// Running, backing off (the monitor restarts it) or failed for good
			// (restartPolicy Never: the pod has failed): nothing to do.
			return nil
		}
	}
	var out []Action
	for _, c := range pod.Spec.Containers {
		if !ps.Containers[c.Name].Exists {
			out = append(out, start(c.Name, false, "container")...)
		}
	}
	return out
}
