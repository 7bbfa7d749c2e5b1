package state_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentd-project/agentd/agent/ctl/printers"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/state"
)

// TestGetPodsGolden drives what the agent knows of a pod through the real status
// builder (state.PodStatus) and the real printer (printers.PodRow), and pins the
// READY, STATUS and RESTARTS columns to what kubectl shows for the same pod on a
// kubelet.
func TestGetPodsGolden(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now := t0.Add(10 * time.Minute)
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}

	type ctr struct {
		name               string
		readiness, startup bool // the spec has such a probe
	}
	pod := func(policy corev1.RestartPolicy, inits []string, ctrs ...ctr) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1", CreationTimestamp: metav1.NewTime(t0)}}
		p.Spec.RestartPolicy = policy
		for _, n := range inits {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n, Image: "busybox"})
		}
		for _, c := range ctrs {
			sc := corev1.Container{Name: c.name, Image: "busybox"}
			if c.readiness {
				sc.ReadinessProbe = probe
			}
			if c.startup {
				sc.StartupProbe = probe
			}
			p.Spec.Containers = append(p.Spec.Containers, sc)
		}
		return p
	}
	runAt := func(id string, restart int, exit *protocol.Exit) protocol.Run {
		return protocol.Run{ContainerID: id, RestartCount: restart, StartedAt: t0.Add(time.Duration(restart) * time.Minute), Exit: exit}
	}
	exitAt := func(code int, min int) *protocol.Exit {
		return &protocol.Exit{ExitCode: code, Reason: protocol.ExitReason(code, false), FinishedAt: t0.Add(time.Duration(min)*time.Minute + 30*time.Second)}
	}
	running := &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{runAt("c1", 0, nil)}}
	// Exited once (restartPolicy Always), restarted at once, running again.
	restarted := &protocol.Journal{State: protocol.StateRunning, RestartCount: 1,
		Runs: []protocol.Run{runAt("c1", 0, exitAt(1, 0)), runAt("c2", 1, nil)}}
	// A first exit: the restart is due at once (no delay).
	firstExit := &protocol.Journal{State: protocol.StateBackOff, BackoffStep: 1, NextStart: t0.Add(30 * time.Second),
		Runs: []protocol.Run{runAt("c1", 0, exitAt(1, 0))}}
	// A second exit: back-off 10s.
	crashLoop := &protocol.Journal{State: protocol.StateBackOff, RestartCount: 1, BackoffStep: 2, NextStart: t0.Add(time.Minute + 40*time.Second),
		Runs: []protocol.Run{runAt("c1", 0, exitAt(1, 0)), runAt("c2", 1, exitAt(1, 1))}}
	completed := &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{runAt("c1", 0, exitAt(0, 0))}}

	up := func(j *protocol.Journal) *state.ContainerInfo { return &state.ContainerInfo{Journal: j} }
	probed := func(j *protocol.Journal, startup, readiness bool) *state.ContainerInfo {
		return &state.ContainerInfo{Journal: j, StartupPassed: startup, ReadinessPassed: readiness}
	}

	cases := []struct {
		name                    string
		pod                     *corev1.Pod
		infos                   map[string]*state.ContainerInfo
		ready, status, restarts string
	}{
		{"nothing created yet", pod("Always", nil, ctr{name: "app"}), nil, "0/1", "ContainerCreating", "0"},
		{"monitor started, run not created yet", pod("Always", nil, ctr{name: "app"}),
			map[string]*state.ContainerInfo{"app": up(&protocol.Journal{State: protocol.StateCreating})}, "0/1", "ContainerCreating", "0"},
		{"image missing", pod("Always", nil, ctr{name: "app"}),
			map[string]*state.ContainerInfo{"app": {Waiting: "ErrImageNeverPull", WaitingMessage: "import it"}}, "0/1", "ErrImageNeverPull", "0"},
		{"init container being created", pod("Always", []string{"init"}, ctr{name: "app"}), nil, "0/1", "Init:0/1", "0"},
		{"init container running", pod("Always", []string{"init"}, ctr{name: "app"}),
			map[string]*state.ContainerInfo{"init": up(running)}, "0/1", "Init:0/1", "0"},
		{"init done, app being created", pod("Always", []string{"init"}, ctr{name: "app"}),
			map[string]*state.ContainerInfo{"init": up(completed)}, "0/1", "PodInitializing", "0"},
		{"init done, app monitor starting", pod("Always", []string{"init"}, ctr{name: "app"}),
			map[string]*state.ContainerInfo{"init": up(completed), "app": {}}, "0/1", "PodInitializing", "0"},
		{"init done, app running", pod("Always", []string{"init"}, ctr{name: "app"}),
			map[string]*state.ContainerInfo{"init": up(completed), "app": up(running)}, "1/1", "Running", "0"},

		{"running, no probes: ready", pod("Always", nil, ctr{name: "app"}),
			map[string]*state.ContainerInfo{"app": up(running)}, "1/1", "Running", "0"},
		{"two containers, one restarted once, no probes: both ready", pod("Always", nil, ctr{name: "app"}, ctr{name: "side"}),
			map[string]*state.ContainerInfo{"app": up(running), "side": up(restarted)}, "2/2", "Running", "1 (9m30s ago)"},
		{"readiness probe not passed yet", pod("Always", nil, ctr{name: "app", readiness: true}),
			map[string]*state.ContainerInfo{"app": up(running)}, "0/1", "Running", "0"},
		{"readiness probe passed", pod("Always", nil, ctr{name: "app", readiness: true}),
			map[string]*state.ContainerInfo{"app": probed(running, false, true)}, "1/1", "Running", "0"},
		{"restarted, readiness probe not passed for the new run", pod("Always", nil, ctr{name: "app", readiness: true}),
			map[string]*state.ContainerInfo{"app": up(restarted)}, "0/1", "Running", "1 (9m30s ago)"},
		{"startup probe not passed: not ready", pod("Always", nil, ctr{name: "app", startup: true}),
			map[string]*state.ContainerInfo{"app": up(running)}, "0/1", "Running", "0"},
		{"startup probe passed, no readiness probe: ready", pod("Always", nil, ctr{name: "app", startup: true}),
			map[string]*state.ContainerInfo{"app": probed(running, true, false)}, "1/1", "Running", "0"},
		{"startup probe passed, readiness probe not yet", pod("Always", nil, ctr{name: "app", startup: true, readiness: true}),
			map[string]*state.ContainerInfo{"app": probed(running, true, false)}, "0/1", "Running", "0"},
		{"a readiness result does not count before the startup probe passed", pod("Always", nil, ctr{name: "app", startup: true, readiness: true}),
			map[string]*state.ContainerInfo{"app": probed(running, false, true)}, "0/1", "Running", "0"},
		{"startup and readiness probes passed", pod("Always", nil, ctr{name: "app", startup: true, readiness: true}),
			map[string]*state.ContainerInfo{"app": probed(running, true, true)}, "1/1", "Running", "0"},

		{"first exit, restarting at once: the exit shows, no CrashLoopBackOff", pod("Always", nil, ctr{name: "app"}, ctr{name: "side"}),
			map[string]*state.ContainerInfo{"app": up(running), "side": up(firstExit)}, "1/2", "Error", "0"},
		{"second exit, in back-off", pod("Always", nil, ctr{name: "app"}),
			map[string]*state.ContainerInfo{"app": up(crashLoop)}, "0/1", "CrashLoopBackOff", "1 (8m30s ago)"},
		{"completed", pod("Never", nil, ctr{name: "app"}),
			map[string]*state.ContainerInfo{"app": up(completed)}, "0/1", "Completed", "0"},
		{"one completed, one running and ready", pod("Never", nil, ctr{name: "app"}, ctr{name: "job"}),
			map[string]*state.ContainerInfo{"app": up(running), "job": up(completed)}, "1/2", "NotReady", "0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			infos := tc.infos
			if infos == nil {
				infos = map[string]*state.ContainerInfo{}
			}
			p := tc.pod.DeepCopy()
			p.Status = state.PodStatus(tc.pod, &state.PodInfo{SandboxReady: true, StartTime: t0, Containers: infos}, now)
			row := printers.PodRow(p, false, now)
			if got := [3]string{row[1], row[2], row[3]}; got != [3]string{tc.ready, tc.status, tc.restarts} {
				t.Errorf("READY STATUS RESTARTS = %q, want %q", got, [3]string{tc.ready, tc.status, tc.restarts})
			}
		})
	}
}
