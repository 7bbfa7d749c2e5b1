package printers

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// now is the fixed "current time" of every test.
var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

func agoPtr(d time.Duration) *metav1.Time {
	t := ago(d)
	return &t
}

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(time.Minute)}}
}

func waiting(reason string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
}

func terminated(reason string, exitCode, signal int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		Reason: reason, ExitCode: exitCode, Signal: signal,
		StartedAt: ago(3 * time.Minute), FinishedAt: ago(2 * time.Minute),
	}}
}

func status(name string, state corev1.ContainerState, ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: state, Ready: ready}
}

// newPod builds a pod whose spec has one app container per status (same names).
func newPod(name string, phase corev1.PodPhase, statuses ...corev1.ContainerStatus) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: ago(5 * time.Minute)},
		Status:     corev1.PodStatus{Phase: phase, ContainerStatuses: statuses},
	}
	for _, s := range statuses {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: s.Name, Image: "busybox"})
	}
	return p
}

// withInit adds one init container per status to the spec and the statuses to the pod;
// extra adds further init containers that have no status yet.
func withInit(p *corev1.Pod, extra int, statuses ...corev1.ContainerStatus) *corev1.Pod {
	for _, s := range statuses {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: s.Name, Image: "busybox"})
	}
	for i := 0; i < extra; i++ {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "later-" + string(rune('a'+i)), Image: "busybox"})
	}
	p.Status.InitContainerStatuses = statuses
	return p
}

func withCondition(p *corev1.Pod, t corev1.PodConditionType, s corev1.ConditionStatus, reason string) *corev1.Pod {
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: t, Status: s, Reason: reason})
	return p
}

func withReason(p *corev1.Pod, reason string) *corev1.Pod {
	p.Status.Reason = reason
	return p
}

func deleted(p *corev1.Pod) *corev1.Pod {
	p.DeletionTimestamp = agoPtr(10 * time.Second)
	return p
}

func restarted(s corev1.ContainerStatus, count int32, finished time.Duration) corev1.ContainerStatus {
	s.RestartCount = count
	s.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		Reason: "Error", ExitCode: 1, StartedAt: ago(finished + time.Minute), FinishedAt: ago(finished),
	}}
	return s
}

func started(s corev1.ContainerStatus, v bool) corev1.ContainerStatus {
	s.Started = &v
	return s
}

// sidecar marks init container i of p as restartable (restartPolicy Always).
func sidecar(p *corev1.Pod, i int) *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	p.Spec.InitContainers[i].RestartPolicy = &always
	return p
}
