package state

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/spec"
)

// ContainerIDPrefix makes a container ID a CRI-style URI, as kubelet reports them.
const ContainerIDPrefix = "agentd://"

// ContainerInfo is what the agent knows of one container.
type ContainerInfo struct {
	Journal *protocol.Journal // nil until its monitor started
	// Waiting is a reason the agent itself could not start the container
	// (ErrImageNeverPull, CreateContainerConfigError, …), with its message.
	Waiting, WaitingMessage string
	// The probe results of the current run (kubelet keys them by container
	// ID: a restarted container has none yet). What they mean depends on the
	// probes the spec has: see Readiness.
	StartupPassed, ReadinessPassed bool
	ImageID                        string
}

// PodInfo is what the agent knows of one pod.
type PodInfo struct {
	SandboxReady bool
	PodIP        string
	HostIP       string
	StartTime    time.Time
	Containers   map[string]*ContainerInfo
}

// PodStatus builds a core/v1 PodStatus the way kubelet would report it.
func PodStatus(pod *corev1.Pod, info *PodInfo, now time.Time) corev1.PodStatus {
	st := corev1.PodStatus{PodIP: info.PodIP, HostIP: info.HostIP, QOSClass: QOSClass(pod)}
	if info.PodIP != "" {
		st.PodIPs = []corev1.PodIP{{IP: info.PodIP}}
	}
	if info.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: info.HostIP}}
	}
	if !info.StartTime.IsZero() {
		t := metav1.NewTime(info.StartTime)
		st.StartTime = &t
	}
	// Kubelet's default waiting reason, for a container it has not created yet:
	// PodInitializing in a pod with init containers (its app containers keep it
	// until they are created, after the init containers finished too),
	// ContainerCreating otherwise.
	waitReason := "ContainerCreating"
	if len(pod.Spec.InitContainers) > 0 {
		waitReason = "PodInitializing"
	}
	// Once an app container was created the pod stays initialized, whatever
	// its sidecars do later.
	appCreated := false
	for _, c := range pod.Spec.Containers {
		ci := info.Containers[c.Name]
		appCreated = appCreated || (ci != nil && ci.Journal != nil)
	}
	initDone, initFailed := true, false
	var sidecars []corev1.ContainerStatus
	for _, c := range pod.Spec.InitContainers {
		cs := containerStatus(pod, &c, info.Containers[c.Name], waitReason)
		if !spec.IsSidecar(&c) {
			// Kubelet: an init container (not a sidecar) is ready once it
			// completed, not while it runs.
			cs.Ready = cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		t := cs.State.Terminated
		if spec.IsSidecar(&c) {
			// A sidecar has done its part of initialization once it started.
			sidecars = append(sidecars, cs)
			if !appCreated && (cs.State.Running == nil || cs.Started == nil || !*cs.Started) {
				initDone = false
			}
			continue
		}
		switch {
		case t != nil && t.ExitCode == 0:
		case t != nil && !willRestart(info.Containers[c.Name]):
			initFailed, initDone = true, false
		default:
			initDone = false
		}
	}
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, containerStatus(pod, &c, info.Containers[c.Name], waitReason))
	}
	st.Phase = phase(pod, st.ContainerStatuses, sidecars, info, initDone, initFailed)

	// Sidecars count as app containers for readiness, as kubelet's.
	allReady := initDone && len(st.ContainerStatuses) > 0
	for _, cs := range append(sidecars, st.ContainerStatuses...) {
		allReady = allReady && cs.Ready
	}
	cond := func(typ corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: typ, Status: corev1.ConditionFalse, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		return c
	}
	readyReason := "ContainersNotReady"
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		readyReason = "PodCompleted"
	}
	st.Conditions = []corev1.PodCondition{
		cond("PodReadyToStartContainers", info.SandboxReady, ""),
		cond(corev1.PodInitialized, initDone, "ContainersNotInitialized"),
		cond(corev1.PodReady, allReady, readyReason),
		cond(corev1.ContainersReady, allReady, readyReason),
		cond(corev1.PodScheduled, true, ""),
	}
	return st
}

// willRestart says whether a container that exited will run again.
func willRestart(ci *ContainerInfo) bool {
	return ci != nil && ci.Journal != nil && ci.Journal.State == protocol.StateBackOff
}

func phase(pod *corev1.Pod, statuses, sidecars []corev1.ContainerStatus, info *PodInfo, initDone, initFailed bool) corev1.PodPhase {
	if initFailed {
		return corev1.PodFailed
	}
	if !initDone {
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded, failed int
	// A running sidecar keeps the pod Running, as kubelet's getPhase; one that
	// exited (or waits to restart) does not count.
	for _, cs := range sidecars {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated == nil:
			waiting++
		}
	}
	for i, cs := range statuses {
		ci := info.Containers[pod.Spec.Containers[i].Name]
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		case cs.LastTerminationState.Terminated != nil && willRestart(ci):
			stopped++ // between restarts
			if cs.LastTerminationState.Terminated.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		switch pod.Spec.RestartPolicy {
		case corev1.RestartPolicyAlways:
			return corev1.PodRunning
		case corev1.RestartPolicyOnFailure:
			if failed > 0 {
				return corev1.PodRunning
			}
			return corev1.PodSucceeded
		}
		if failed == 0 {
			return corev1.PodSucceeded
		}
		return corev1.PodFailed
	}
	return corev1.PodPending
}

func containerStatus(pod *corev1.Pod, c *corev1.Container, ci *ContainerInfo, waitReason string) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	if ci == nil {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waitReason}
		return cs
	}
	cs.ImageID = ci.ImageID
	j := ci.Journal
	if j == nil {
		reason := ci.Waiting
		if reason == "" {
			reason = waitReason
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: ci.WaitingMessage}
		return cs
	}
	cs.RestartCount = int32(j.RestartCount)
	cur := j.Current()
	var prev *protocol.Run
	if n := len(j.Runs); n >= 2 {
		prev = &j.Runs[n-2]
	}
	if cur != nil && cur.ContainerID != "" {
		cs.ContainerID = ContainerIDPrefix + cur.ContainerID
	}
	switch {
	case cur == nil:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waitReason}
	case j.State == protocol.StateRunning && cur.Exit == nil:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(cur.StartedAt)}
		started, ready := Readiness(c, ci.StartupPassed, ci.ReadinessPassed)
		cs.Started, cs.Ready = &started, ready
		cs.LastTerminationState = terminated(prev)
	case j.State == protocol.StateBackOff && !InBackOff(j):
		// A first exit restarts at once (kubelet's back-off starts with the
		// second): kubelet shows the exit until the new run, not CrashLoopBackOff.
		cs.State = terminated(cur)
		cs.LastTerminationState = terminated(prev)
	case j.State == protocol.StateBackOff:
		msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
			backoffText(j.NextStart, cur.Exit), c.Name, pod.Name, pod.Namespace, pod.UID)
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: msg}
		cs.LastTerminationState = terminated(cur)
	case cur.Exit != nil:
		cs.State = terminated(cur)
		cs.LastTerminationState = terminated(prev)
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waitReason}
	}
	if cs.Started == nil {
		f := false
		cs.Started = &f
	}
	return cs
}

// Readiness is the started and ready fields of a running container, as
// kubelet's prober manager sets them: started once its startup probe passed
// this run, at once without one; ready once started and its readiness probe
// passed this run, at once without one.
func Readiness(c *corev1.Container, startupPassed, readinessPassed bool) (started, ready bool) {
	started = c.StartupProbe == nil || startupPassed
	ready = started && (c.ReadinessProbe == nil || readinessPassed)
	return started, ready
}

// InBackOff reports whether a journal in BackOff waits before its next run:
// a delay applies. Only then does kubelet report CrashLoopBackOff and record a
// BackOff event.
func InBackOff(j *protocol.Journal) bool {
	if j == nil || j.State != protocol.StateBackOff {
		return false
	}
	e := j.LastExit()
	return e != nil && j.NextStart.After(e.FinishedAt)
}

func backoffText(next time.Time, exit *protocol.Exit) string {
	if exit == nil || next.IsZero() {
		return "0s"
	}
	return next.Sub(exit.FinishedAt).Round(time.Second).String()
}

func terminated(r *protocol.Run) corev1.ContainerState {
	if r == nil || r.Exit == nil {
		return corev1.ContainerState{}
	}
	e := r.Exit
	t := &corev1.ContainerStateTerminated{
		ExitCode:   int32(e.ExitCode),
		Signal:     int32(e.Signal),
		Reason:     e.Reason,
		Message:    e.Message,
		StartedAt:  metav1.NewTime(r.StartedAt),
		FinishedAt: metav1.NewTime(e.FinishedAt),
	}
	if r.ContainerID != "" {
		t.ContainerID = ContainerIDPrefix + r.ContainerID
	}
	if e.Reason == protocol.ReasonStartError {
		t.StartedAt = metav1.Time{} // it never started
	}
	return corev1.ContainerState{Terminated: t}
}

// QOSClass computes a pod's QoS class as Kubernetes does.
func QOSClass(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := 0, 0
	guaranteed := true
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq && !req.IsZero() {
				requests++
			}
			if hasLim && !lim.IsZero() {
				limits++
			}
			if !hasLim || lim.IsZero() || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case requests == 0 && limits == 0:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
