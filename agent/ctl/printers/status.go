// Package printers renders agentd's objects the way kubectl and docker render theirs: the
// STATUS/READY/RESTARTS/AGE columns of `kubectl get pods`, `kubectl describe pod`,
// `kubectl get events` and a `docker info`-style summary. Every function is pure: the
// current time is a parameter, so output is reproducible and table-tested.
//
// Output formats (the -o flag of agentctl): "" (table), "wide", "json", "yaml", "name".
// JSON and YAML are what kubectl prints for the same objects: keys sorted, JSON
// indented by four spaces, lists as kind "List".
package printers

import (
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// nodeLostReason is the pod reason the node lifecycle controller sets when a node is
// unreachable (k8s.io/kubernetes/pkg/util/node.NodeUnreachablePodReason); kubectl shows
// such a pod, once being deleted, as "Unknown".
const nodeLostReason = "NodeLost"

// HumanDuration is kubectl's AGE format ("45s", "2m30s", "10m", "3h5m", "2d3h", "1y20d"),
// k8s.io/apimachinery's duration.HumanDuration.
func HumanDuration(d time.Duration) string {
	return duration.HumanDuration(d)
}

// since is kubectl's translateTimestampSince: "<unknown>" for a zero time.
func since(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return HumanDuration(now.Sub(t.Time))
}

// podSummary is what kubectl's printPod derives from a pod for the table columns.
type podSummary struct {
	ready, total int
	status       string
	restarts     int
	lastRestart  time.Time // finishedAt of the most recent restart; zero when unknown
}

// PodStatusString is kubectl's STATUS column for a pod. Precedence, lowest first (a later
// rule overrides an earlier one): the phase; status.reason (Evicted, …); SchedulingGated;
// the first init container that has not succeeded (Init:<reason>, Init:Signal:N,
// Init:ExitCode:N, Init:<waiting reason>, Init:N/M); once initialized, the waiting or
// terminated reason of the first app container that has one (ContainerCreating,
// CrashLoopBackOff, PodInitializing, Completed, Error, OOMKilled, Signal:N, ExitCode:N, …),
// where "Completed" turns back into Running (Ready condition true) or NotReady while
// another container still runs; finally Unknown (being deleted on a lost node) or
// Terminating (being deleted and not yet Succeeded/Failed).
func PodStatusString(pod *corev1.Pod) string {
	return summarizePod(pod).status
}

func summarizePod(pod *corev1.Pod) podSummary {
	s := podSummary{total: len(pod.Spec.Containers)}

	s.status = string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		s.status = pod.Status.Reason
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			s.status = corev1.PodReasonSchedulingGated
		}
	}

	// Sidecars (init containers with restartPolicy Always) count as app containers for
	// READY, and their restarts count even after initialization.
	sidecars := map[string]bool{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
			s.total++
		}
	}

	var sidecarRestarts int
	var sidecarLastRestart time.Time
	initializing := false
	for i, cs := range pod.Status.InitContainerStatuses {
		s.restarts += int(cs.RestartCount)
		s.lastRestart = laterRestart(s.lastRestart, cs)
		if sidecars[cs.Name] {
			sidecarRestarts += int(cs.RestartCount)
			sidecarLastRestart = laterRestart(sidecarLastRestart, cs)
		}
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
			continue
		}
		if sidecars[cs.Name] && cs.Started != nil && *cs.Started {
			if cs.Ready {
				s.ready++
			}
			continue
		}
		initializing = true
		switch {
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			switch {
			case t.Reason != "":
				s.status = "Init:" + t.Reason
			case t.Signal != 0:
				s.status = "Init:Signal:" + strconv.Itoa(int(t.Signal))
			default:
				s.status = "Init:ExitCode:" + strconv.Itoa(int(t.ExitCode))
			}
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			s.status = "Init:" + cs.State.Waiting.Reason
		default:
			s.status = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		break // the first unfinished init container decides
	}

	if !initializing || conditionTrue(pod, corev1.PodInitialized) {
		s.restarts = sidecarRestarts
		s.lastRestart = sidecarLastRestart
		hasRunning := false
		// Backwards, so that the first container with a reason has the last word.
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			cs := pod.Status.ContainerStatuses[i]
			s.restarts += int(cs.RestartCount)
			s.lastRestart = laterRestart(s.lastRestart, cs)
			switch {
			case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
				s.status = cs.State.Waiting.Reason
			case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
				s.status = cs.State.Terminated.Reason
			case cs.State.Terminated != nil && cs.State.Terminated.Signal != 0:
				s.status = "Signal:" + strconv.Itoa(int(cs.State.Terminated.Signal))
			case cs.State.Terminated != nil:
				s.status = "ExitCode:" + strconv.Itoa(int(cs.State.Terminated.ExitCode))
			case cs.Ready && cs.State.Running != nil:
				hasRunning = true
				s.ready++
			}
		}
		if s.status == "Completed" && hasRunning {
			if conditionTrue(pod, corev1.PodReady) {
				s.status = "Running"
			} else {
				s.status = "NotReady"
			}
		}
	}

	if pod.DeletionTimestamp != nil {
		switch {
		case pod.Status.Reason == nodeLostReason:
			s.status = "Unknown"
		case pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed:
			s.status = "Terminating"
		}
	}
	return s
}

// laterRestart returns the later of t and the time cs last finished before a restart.
func laterRestart(t time.Time, cs corev1.ContainerStatus) time.Time {
	if last := cs.LastTerminationState.Terminated; last != nil && t.Before(last.FinishedAt.Time) {
		return last.FinishedAt.Time
	}
	return t
}

func conditionTrue(pod *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodRow returns the cells of a pod's `kubectl get pods` row: NAME READY STATUS RESTARTS
// AGE, and with wide also IP NODE NOMINATED NODE READINESS GATES.
//
// READY is ready/total app containers (sidecar init containers included); RESTARTS is the
// sum of restart counts, followed by " (<age> ago)" of the most recent restart when a
// container's lastState.terminated.finishedAt is known; AGE counts from
// metadata.creationTimestamp, or status.startTime when the pod has none.
func PodRow(pod *corev1.Pod, wide bool, now time.Time) []string {
	s := summarizePod(pod)

	restarts := strconv.Itoa(s.restarts)
	if s.restarts != 0 && !s.lastRestart.IsZero() {
		restarts = fmt.Sprintf("%d (%s ago)", s.restarts, HumanDuration(now.Sub(s.lastRestart)))
	}

	created := pod.CreationTimestamp
	if created.IsZero() && pod.Status.StartTime != nil {
		created = *pod.Status.StartTime
	}

	row := []string{
		pod.Name,
		fmt.Sprintf("%d/%d", s.ready, s.total),
		s.status,
		restarts,
		since(created, now),
	}
	if !wide {
		return row
	}

	ip := pod.Status.PodIP
	if len(pod.Status.PodIPs) > 0 {
		ip = pod.Status.PodIPs[0].IP
	}
	gates := "<none>"
	if n := len(pod.Spec.ReadinessGates); n > 0 {
		trueGates := 0
		for _, g := range pod.Spec.ReadinessGates {
			if conditionTrue(pod, g.ConditionType) {
				trueGates++
			}
		}
		gates = fmt.Sprintf("%d/%d", trueGates, n)
	}
	return append(row, orNone(ip), orNone(pod.Spec.NodeName), orNone(pod.Status.NominatedNodeName), gates)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
