package state

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// Sidecars (init containers with restartPolicy Always) initialize the pod once
// started, keep it Running while they run, and count for its readiness, as
// kubelet's status does.
func TestPodStatusSidecars(t *testing.T) {
	running := func() *protocol.Journal {
		return &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{run("c1", 0, nil)}}
	}
	backoff := &protocol.Journal{State: protocol.StateBackOff, RestartCount: 1, NextStart: t0.Add(40 * time.Second),
		Runs: []protocol.Run{run("c2", 1, exit(1, protocol.ReasonError))}}
	done := &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{run("c1", 0, exit(0, protocol.ReasonCompleted))}}
	pod := mkPod(corev1.RestartPolicyNever, []string{"setup", "proxy"}, "app")
	always := corev1.ContainerRestartPolicyAlways
	pod.Spec.InitContainers[1].RestartPolicy = &always
	// The sidecar has a startup and a readiness probe, the app a readiness
	// probe: what passed of them is in ContainerInfo.
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	pod.Spec.InitContainers[1].StartupProbe, pod.Spec.InitContainers[1].ReadinessProbe = probe, probe
	pod.Spec.Containers[0].ReadinessProbe = probe
	cases := []struct {
		name        string
		infos       map[string]*ContainerInfo
		phase       corev1.PodPhase
		initialized bool
		ready       bool
	}{
		{"sidecar running, startup probe not passed: initializing",
			map[string]*ContainerInfo{"setup": {Journal: done}, "proxy": {Journal: running()}}, corev1.PodPending, false, false},
		{"sidecar started: initialized although it runs",
			map[string]*ContainerInfo{"setup": {Journal: done}, "proxy": {Journal: running(), StartupPassed: true}}, corev1.PodPending, true, false},
		{"app and sidecar running and ready: Running, Ready",
			map[string]*ContainerInfo{"setup": {Journal: done}, "proxy": {Journal: running(), StartupPassed: true, ReadinessPassed: true}, "app": {Journal: running(), StartupPassed: true, ReadinessPassed: true}}, corev1.PodRunning, true, true},
		{"sidecar not ready: pod not ready",
			map[string]*ContainerInfo{"setup": {Journal: done}, "proxy": {Journal: running(), StartupPassed: true}, "app": {Journal: running(), StartupPassed: true, ReadinessPassed: true}}, corev1.PodRunning, true, false},
		{"sidecar restarting after initialization: still initialized, not ready",
			map[string]*ContainerInfo{"setup": {Journal: done}, "proxy": {Journal: backoff}, "app": {Journal: running(), StartupPassed: true, ReadinessPassed: true}}, corev1.PodRunning, true, false},
		{"app exited for good, sidecar running: Running (the sidecar is not done)",
			map[string]*ContainerInfo{"setup": {Journal: done}, "proxy": {Journal: running(), StartupPassed: true, ReadinessPassed: true}, "app": {Journal: done}}, corev1.PodRunning, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := PodStatus(pod, &PodInfo{SandboxReady: true, Containers: tc.infos}, t0)
			cond := map[corev1.PodConditionType]bool{}
			for _, c := range st.Conditions {
				cond[c.Type] = c.Status == corev1.ConditionTrue
			}
			if st.Phase != tc.phase || cond[corev1.PodInitialized] != tc.initialized || cond[corev1.PodReady] != tc.ready {
				t.Errorf("phase %s initialized %v ready %v; want %s %v %v", st.Phase, cond[corev1.PodInitialized], cond[corev1.PodReady], tc.phase, tc.initialized, tc.ready)
			}
		})
	}
}
