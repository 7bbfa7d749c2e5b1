package state

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

var t0 = time.Unix(1_700_000_000, 0)

func mkPod(policy corev1.RestartPolicy, inits []string, ctrs ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u"}}
	p.Spec.RestartPolicy = policy
	for _, c := range inits {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: c, Image: "img"})
	}
	for _, c := range ctrs {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "img"})
	}
	return p
}

func withReadinessProbe(p *corev1.Pod) *corev1.Pod {
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	}
	return p
}

func run(id string, restart int, exit *protocol.Exit) protocol.Run {
	return protocol.Run{ContainerID: id, RestartCount: restart, StartedAt: t0.Add(time.Duration(restart) * time.Minute), Exit: exit}
}

func exit(code int, reason string) *protocol.Exit {
	return &protocol.Exit{ExitCode: code, Reason: reason, FinishedAt: t0.Add(30 * time.Second)}
}

func TestPodStatus(t *testing.T) {
	runningJ := &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{run("c1", 0, nil)}}
	restartedJ := &protocol.Journal{State: protocol.StateRunning, RestartCount: 1, Runs: []protocol.Run{run("c1", 0, exit(3, protocol.ReasonError)), run("c2", 1, nil)}}
	backoffJ := &protocol.Journal{State: protocol.StateBackOff, RestartCount: 2, NextStart: t0.Add(50 * time.Second), Runs: []protocol.Run{run("c3", 2, exit(1, protocol.ReasonError))}}
	doneJ := &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{run("c1", 0, exit(0, protocol.ReasonCompleted))}}
	failedJ := &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{run("c1", 0, exit(2, protocol.ReasonError))}}
	cases := []struct {
		name  string
		pod   *corev1.Pod
		infos map[string]*ContainerInfo
		phase corev1.PodPhase
		ready bool
		check func(t *testing.T, st corev1.PodStatus)
	}{
		{"creating", mkPod("Always", nil, "a"), map[string]*ContainerInfo{}, corev1.PodPending, false, func(t *testing.T, st corev1.PodStatus) {
			if st.ContainerStatuses[0].State.Waiting.Reason != "ContainerCreating" {
				t.Errorf("%+v", st.ContainerStatuses[0].State)
			}
		}},
		{"no image", mkPod("Always", nil, "a"), map[string]*ContainerInfo{"a": {Waiting: "ErrImageNeverPull", WaitingMessage: "import it"}}, corev1.PodPending, false, func(t *testing.T, st corev1.PodStatus) {
			if w := st.ContainerStatuses[0].State.Waiting; w.Reason != "ErrImageNeverPull" || w.Message != "import it" {
				t.Errorf("%+v", w)
			}
		}},
		{"running and ready", mkPod("Always", nil, "a"), map[string]*ContainerInfo{"a": {Journal: runningJ, ReadinessPassed: true, StartupPassed: true}}, corev1.PodRunning, true, func(t *testing.T, st corev1.PodStatus) {
			cs := st.ContainerStatuses[0]
			if cs.State.Running == nil || cs.ContainerID != "agentd://c1" || !*cs.Started {
				t.Errorf("%+v", cs)
			}
		}},
		{"running, readiness probe not passed", withReadinessProbe(mkPod("Always", nil, "a")), map[string]*ContainerInfo{"a": {Journal: runningJ}}, corev1.PodRunning, false, nil},
		{"restarted: lastState", mkPod("Always", nil, "a"), map[string]*ContainerInfo{"a": {Journal: restartedJ}}, corev1.PodRunning, true, func(t *testing.T, st corev1.PodStatus) {
			cs := st.ContainerStatuses[0]
			if cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 3 || cs.ContainerID != "agentd://c2" {
				t.Errorf("%+v", cs)
			}
		}},
		{"crash loop", mkPod("Always", nil, "a"), map[string]*ContainerInfo{"a": {Journal: backoffJ}}, corev1.PodRunning, false, func(t *testing.T, st corev1.PodStatus) {
			cs := st.ContainerStatuses[0]
			if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" || !strings.Contains(cs.State.Waiting.Message, "back-off 20s") ||
				cs.LastTerminationState.Terminated.ExitCode != 1 || cs.RestartCount != 2 {
				t.Errorf("%+v", cs)
			}
		}},
		{"completed", mkPod("Never", nil, "a"), map[string]*ContainerInfo{"a": {Journal: doneJ}}, corev1.PodSucceeded, false, nil},
		{"failed", mkPod("Never", nil, "a"), map[string]*ContainerInfo{"a": {Journal: failedJ}}, corev1.PodFailed, false, func(t *testing.T, st corev1.PodStatus) {
			if st.ContainerStatuses[0].State.Terminated.Reason != protocol.ReasonError {
				t.Errorf("%+v", st.ContainerStatuses[0].State)
			}
		}},
		{"OnFailure success", mkPod("OnFailure", nil, "a", "b"), map[string]*ContainerInfo{"a": {Journal: doneJ}, "b": {Journal: doneJ}}, corev1.PodSucceeded, false, nil},
		{"init running", mkPod("Always", []string{"i"}, "a"), map[string]*ContainerInfo{"i": {Journal: runningJ}}, corev1.PodPending, false, func(t *testing.T, st corev1.PodStatus) {
			if st.InitContainerStatuses[0].Ready || !*st.InitContainerStatuses[0].Started {
				t.Errorf("a running init container is started, not ready, as kubelet's: %+v", st.InitContainerStatuses[0])
			}
			if st.ContainerStatuses[0].State.Waiting.Reason != "PodInitializing" || st.Conditions[1].Status != corev1.ConditionFalse {
				t.Errorf("%+v %+v", st.ContainerStatuses[0].State, st.Conditions)
			}
		}},
		{"init failed for good", mkPod("Never", []string{"i"}, "a"), map[string]*ContainerInfo{"i": {Journal: failedJ}}, corev1.PodFailed, false, nil},
		{"init done", mkPod("Always", []string{"i"}, "a"), map[string]*ContainerInfo{"i": {Journal: doneJ}, "a": {Journal: runningJ}}, corev1.PodRunning, true, func(t *testing.T, st corev1.PodStatus) {
			if !st.InitContainerStatuses[0].Ready {
				t.Errorf("a completed init container is ready, as kubelet's: %+v", st.InitContainerStatuses[0])
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := PodStatus(tc.pod, &PodInfo{SandboxReady: true, PodIP: "10.77.0.2", StartTime: t0, Containers: tc.infos}, t0.Add(time.Hour))
			if st.Phase != tc.phase {
				t.Errorf("phase %s, want %s", st.Phase, tc.phase)
			}
			var ready bool
			for _, c := range st.Conditions {
				if c.Type == corev1.PodReady {
					ready = c.Status == corev1.ConditionTrue
				}
			}
			if ready != tc.ready {
				t.Errorf("ready %v, want %v: %+v", ready, tc.ready, st.Conditions)
			}
			if st.PodIP != "10.77.0.2" || st.StartTime == nil {
				t.Errorf("ip/start: %+v", st)
			}
			if tc.check != nil {
				tc.check(t, st)
			}
		})
	}
}

func TestQOSClass(t *testing.T) {
	p := mkPod("Always", nil, "a")
	if QOSClass(p) != corev1.PodQOSBestEffort {
		t.Error("best effort")
	}
	p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: *resourceQ("64Mi"), corev1.ResourceCPU: *resourceQ("1")}
	p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: *resourceQ("64Mi"), corev1.ResourceCPU: *resourceQ("1")}
	if QOSClass(p) != corev1.PodQOSGuaranteed {
		t.Error("guaranteed")
	}
	p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: *resourceQ("32Mi")}
	if QOSClass(p) != corev1.PodQOSBurstable {
		t.Error("burstable")
	}
}

func resourceQ(s string) *resource.Quantity { q := resource.MustParse(s); return &q }
