package printers

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodStatusString(t *testing.T) {
	done := status("init", terminated("Completed", 0, 0), false)

	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"pending, nothing reported yet", newPod("p", corev1.PodPending), "Pending"},
		{"no phase at all prints nothing, as kubectl", newPod("p", ""), ""},
		{"pod reason replaces the phase", withReason(newPod("p", corev1.PodFailed), "Evicted"), "Evicted"},
		{"a container reason outranks the pod reason",
			withReason(newPod("p", corev1.PodFailed, status("c", terminated("ContainerStatusUnknown", 137, 0), false)), "Evicted"),
			"ContainerStatusUnknown"},
		{"scheduling gated",
			withCondition(newPod("p", corev1.PodPending), corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonSchedulingGated),
			"SchedulingGated"},

		{"first init container running", withInit(newPod("p", corev1.PodPending, status("c", waiting("PodInitializing"), false)), 1,
			status("init", running(), false)), "Init:0/2"},
		{"second init container running", withInit(newPod("p", corev1.PodPending), 0,
			done, status("init2", running(), false)), "Init:1/2"},
		{"init container waiting for PodInitializing counts as N/M", withInit(newPod("p", corev1.PodPending), 0,
			done, status("init2", waiting("PodInitializing"), false)), "Init:1/2"},
		{"init container waiting reason", withInit(newPod("p", corev1.PodPending, status("c", waiting("PodInitializing"), false)), 0,
			status("init", waiting("CrashLoopBackOff"), false)), "Init:CrashLoopBackOff"},
		{"init container terminated reason", withInit(newPod("p", corev1.PodPending, status("c", waiting("PodInitializing"), false)), 0,
			status("init", terminated("Error", 1, 0), false)), "Init:Error"},
		{"init container exit code without reason", withInit(newPod("p", corev1.PodPending), 0,
			status("init", terminated("", 3, 0), false)), "Init:ExitCode:3"},
		{"init container signal without reason", withInit(newPod("p", corev1.PodPending), 0,
			status("init", terminated("", 137, 9), false)), "Init:Signal:9"},
		{"a failed init container is reported even when a later one ran", withInit(newPod("p", corev1.PodPending), 0,
			status("init", terminated("OOMKilled", 137, 0), false), status("init2", running(), false)), "Init:OOMKilled"},

		{"app containers not started after init", withInit(newPod("p", corev1.PodPending,
			status("c", waiting("PodInitializing"), false)), 0, done), "PodInitializing"},
		{"container creating", newPod("p", corev1.PodPending, status("c", waiting("ContainerCreating"), false)), "ContainerCreating"},
		{"crash loop", newPod("p", corev1.PodRunning, status("c", waiting("CrashLoopBackOff"), false)), "CrashLoopBackOff"},
		{"image never pulled", newPod("p", corev1.PodPending, status("c", waiting("ErrImageNeverPull"), false)), "ErrImageNeverPull"},
		{"create container error", newPod("p", corev1.PodPending, status("c", waiting("CreateContainerError"), false)), "CreateContainerError"},
		{"completed", newPod("p", corev1.PodSucceeded, status("c", terminated("Completed", 0, 0), false)), "Completed"},
		{"error", newPod("p", corev1.PodFailed, status("c", terminated("Error", 1, 0), false)), "Error"},
		{"oom killed", newPod("p", corev1.PodRunning, status("c", terminated("OOMKilled", 137, 0), false)), "OOMKilled"},
		{"exit code without reason", newPod("p", corev1.PodFailed, status("c", terminated("", 2, 0), false)), "ExitCode:2"},
		{"signal without reason", newPod("p", corev1.PodFailed, status("c", terminated("", 143, 15), false)), "Signal:15"},
		{"running", newPod("p", corev1.PodRunning, status("c", running(), true)), "Running"},
		{"running but not ready is still Running, as kubectl",
			withCondition(newPod("p", corev1.PodRunning, status("c", running(), false)), corev1.PodReady, corev1.ConditionFalse, ""),
			"Running"},
		{"one container completed, another runs, pod not ready",
			withCondition(newPod("p", corev1.PodRunning, status("a", terminated("Completed", 0, 0), false), status("b", running(), true)),
				corev1.PodReady, corev1.ConditionFalse, ""),
			"NotReady"},
		{"one container completed, another runs, pod ready",
			withCondition(newPod("p", corev1.PodRunning, status("a", terminated("Completed", 0, 0), false), status("b", running(), true)),
				corev1.PodReady, corev1.ConditionTrue, ""),
			"Running"},
		{"the first container with a reason wins",
			newPod("p", corev1.PodPending, status("a", waiting("CrashLoopBackOff"), false), status("b", waiting("ContainerCreating"), false)),
			"CrashLoopBackOff"},
		{"started sidecar does not hold initialization", sidecar(withInit(newPod("p", corev1.PodRunning, status("c", running(), true)), 0,
			started(status("side", running(), true), true)), 0), "Running"},
		{"sidecar not yet started holds initialization", sidecar(withInit(newPod("p", corev1.PodPending, status("c", waiting("PodInitializing"), false)), 0,
			started(status("side", running(), false), false)), 0), "Init:0/1"},

		{"being deleted", deleted(newPod("p", corev1.PodRunning, status("c", running(), true))), "Terminating"},
		{"being deleted outranks a container reason", deleted(newPod("p", corev1.PodRunning, status("c", waiting("CrashLoopBackOff"), false))), "Terminating"},
		{"a deleted pod that succeeded stays Completed", deleted(newPod("p", corev1.PodSucceeded, status("c", terminated("Completed", 0, 0), false))), "Completed"},
		{"being deleted on a lost node", deleted(withReason(newPod("p", corev1.PodRunning, status("c", running(), true)), "NodeLost")), "Unknown"},
		{"unknown phase", newPod("p", corev1.PodUnknown), "Unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodStatusString(tt.pod); got != tt.want {
				t.Errorf("PodStatusString() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPodRow(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		wide bool
		want []string
	}{
		{
			name: "no restarts",
			pod:  newPod("web", corev1.PodRunning, status("c", running(), true)),
			want: []string{"web", "1/1", "Running", "0", "5m"},
		},
		{
			name: "restarts with the time of the last one",
			pod:  newPod("web", corev1.PodRunning, restarted(status("c", running(), true), 3, 2*time.Minute)),
			want: []string{"web", "1/1", "Running", "3 (2m ago)", "5m"},
		},
		{
			name: "restarts are summed, the most recent restart is shown",
			pod: newPod("web", corev1.PodRunning,
				restarted(status("a", running(), true), 1, 10*time.Minute),
				restarted(status("b", waiting("CrashLoopBackOff"), false), 2, 2*time.Minute)),
			want: []string{"web", "1/2", "CrashLoopBackOff", "3 (2m ago)", "5m"},
		},
		{
			name: "restarts without a last state print the count only",
			pod: func() *corev1.Pod {
				p := newPod("web", corev1.PodRunning, status("c", running(), true))
				p.Status.ContainerStatuses[0].RestartCount = 2
				return p
			}(),
			want: []string{"web", "1/1", "Running", "2", "5m"},
		},
		{
			name: "init container restarts count while initializing",
			pod: withInit(newPod("web", corev1.PodPending, status("c", waiting("PodInitializing"), false)), 0,
				restarted(status("init", waiting("CrashLoopBackOff"), false), 4, time.Minute)),
			want: []string{"web", "0/1", "Init:CrashLoopBackOff", "4 (60s ago)", "5m"},
		},
		{
			name: "a ready sidecar counts in READY",
			pod: sidecar(withInit(newPod("web", corev1.PodRunning, status("c", running(), true)), 0,
				started(status("side", running(), true), true)), 0),
			want: []string{"web", "2/2", "Running", "0", "5m"},
		},
		{
			name: "age in minutes and seconds under ten minutes",
			pod: func() *corev1.Pod {
				p := newPod("web", corev1.PodRunning, status("c", running(), true))
				p.CreationTimestamp = ago(150 * time.Second)
				return p
			}(),
			want: []string{"web", "1/1", "Running", "0", "2m30s"},
		},
		{
			name: "age from the start time without a creation timestamp",
			pod: func() *corev1.Pod {
				p := newPod("web", corev1.PodRunning, status("c", running(), true))
				p.CreationTimestamp = metav1.Time{}
				p.Status.StartTime = agoPtr(3 * time.Hour)
				return p
			}(),
			want: []string{"web", "1/1", "Running", "0", "3h"},
		},
		{
			name: "no timestamps at all",
			pod: func() *corev1.Pod {
				p := newPod("web", corev1.PodPending)
				p.CreationTimestamp = metav1.Time{}
				return p
			}(),
			want: []string{"web", "0/0", "Pending", "0", "<unknown>"},
		},
		{
			name: "wide",
			pod: func() *corev1.Pod {
				p := newPod("web", corev1.PodRunning, status("c", running(), true))
				p.Spec.NodeName = "node-a"
				p.Status.PodIP = "10.77.0.5"
				p.Status.PodIPs = []corev1.PodIP{{IP: "10.77.0.5"}, {IP: "fd00::5"}}
				p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/a"}, {ConditionType: "example.com/b"}}
				return withCondition(p, "example.com/b", corev1.ConditionTrue, "")
			}(),
			wide: true,
			want: []string{"web", "1/1", "Running", "0", "5m", "10.77.0.5", "node-a", "<none>", "1/2"},
		},
		{
			name: "wide with nothing known",
			pod:  newPod("web", corev1.PodPending),
			wide: true,
			want: []string{"web", "0/0", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"},
		},
		{
			name: "wide falls back to status.podIP",
			pod: func() *corev1.Pod {
				p := newPod("web", corev1.PodRunning, status("c", running(), true))
				p.Status.PodIP = "10.77.0.9"
				return p
			}(),
			wide: true,
			want: []string{"web", "1/1", "Running", "0", "5m", "10.77.0.9", "<none>", "<none>", "<none>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodRow(tt.pod, tt.wide, now); !slices.Equal(got, tt.want) {
				t.Errorf("PodRow() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-5 * time.Second, "<invalid>"},
		{-1 * time.Second, "0s"},
		{45 * time.Second, "45s"},
		{119 * time.Second, "119s"},
		{150 * time.Second, "2m30s"},
		{3 * time.Minute, "3m"},
		{10 * time.Minute, "10m"},
		{3*time.Hour + 5*time.Minute, "3h5m"},
		{9 * time.Hour, "9h"},
		{50 * time.Hour, "2d2h"},
		{400 * 24 * time.Hour, "400d"},
		{(3*365 + 20) * 24 * time.Hour, "3y20d"},
	}
	for _, tt := range tests {
		if got := HumanDuration(tt.d); got != tt.want {
			t.Errorf("HumanDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
