package reconcile

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func pod(name, uid string, inits []string, ctrs ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(uid)}}
	for _, c := range inits {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: c})
	}
	for _, c := range ctrs {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	return p
}

var (
	running   = ContainerState{Exists: true, State: protocol.StateRunning}
	backoff   = ContainerState{Exists: true, State: protocol.StateBackOff}
	completed = ContainerState{Exists: true, State: protocol.StateExited, ExitCode: 0}
	failed    = ContainerState{Exists: true, State: protocol.StateExited, ExitCode: 1}
)

// summary renders actions as "Kind pod[/container]" for compact expectations.
func summary(as []Action) []string {
	var out []string
	for _, a := range as {
		s := string(a.Kind) + " " + a.Pod.Name
		if a.Container != "" {
			s += "/" + a.Container
		}
		out = append(out, s)
	}
	return out
}

func TestPlan(t *testing.T) {
	now := time.Unix(1000, 0)
	web := pod("web", "u1", nil, "app", "sidecar")
	job := pod("job", "u2", []string{"init1", "init2"}, "main")
	webV2 := pod("web", "u9", nil, "app", "sidecar")
	sb := func(p *corev1.Pod, cs map[string]ContainerState) *PodState {
		return &PodState{Pod: p, Sandbox: true, Containers: cs}
	}
	cases := []struct {
		name     string
		desired  []*corev1.Pod
		observed Observed
		want     []string
	}{
		{"nothing", nil, Observed{}, nil},
		{"new pod gets a sandbox first", []*corev1.Pod{web}, Observed{}, []string{"CreateSandbox web"}},
		{"then all app containers", []*corev1.Pod{web}, Observed{"u1": sb(web, nil)}, []string{"StartContainer web/app", "StartContainer web/sidecar"}},
		{"running pod: nothing", []*corev1.Pod{web}, Observed{"u1": sb(web, map[string]ContainerState{"app": running, "sidecar": backoff})}, nil},
		{"exited for good is left alone (the monitor applied the policy)", []*corev1.Pod{web}, Observed{"u1": sb(web, map[string]ContainerState{"app": failed, "sidecar": completed})}, nil},
		{"first init container alone", []*corev1.Pod{job}, Observed{"u2": sb(job, nil)}, []string{"StartContainer job/init1"}},
		{"init running: wait", []*corev1.Pod{job}, Observed{"u2": sb(job, map[string]ContainerState{"init1": running})}, nil},
		{"init backing off: wait", []*corev1.Pod{job}, Observed{"u2": sb(job, map[string]ContainerState{"init1": backoff})}, nil},
		{"init done: the next", []*corev1.Pod{job}, Observed{"u2": sb(job, map[string]ContainerState{"init1": completed})}, []string{"StartContainer job/init2"}},
		{"init failed for good: nothing more", []*corev1.Pod{job}, Observed{"u2": sb(job, map[string]ContainerState{"init1": failed})}, nil},
		{"inits done: app containers", []*corev1.Pod{job}, Observed{"u2": sb(job, map[string]ContainerState{"init1": completed, "init2": completed})}, []string{"StartContainer job/main"}},
		{"removed manifest: kill", nil, Observed{"u1": sb(web, map[string]ContainerState{"app": running})}, []string{"KillPod web"}},
		{"already terminating: nothing", nil, Observed{"u1": {Pod: web, Sandbox: true, Terminating: true}}, nil},
		{"changed manifest: kill the old, wait before the new", []*corev1.Pod{webV2}, Observed{"u1": sb(web, map[string]ContainerState{"app": running})}, []string{"KillPod web"}},
		{"old copy terminating: still wait", []*corev1.Pod{webV2}, Observed{"u1": {Pod: web, Sandbox: true, Terminating: true}}, nil},
		{"retry not due", []*corev1.Pod{web}, Observed{"u1": sb(web, map[string]ContainerState{"app": {RetryAt: now.Add(time.Second)}, "sidecar": running})}, nil},
		{"retry due", []*corev1.Pod{web}, Observed{"u1": sb(web, map[string]ContainerState{"app": {RetryAt: now}, "sidecar": running})}, []string{"StartContainer web/app"}},
		{"deterministic order", []*corev1.Pod{web, job}, Observed{}, []string{"CreateSandbox job", "CreateSandbox web"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := summary(Plan(tc.desired, tc.observed, now))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Plan = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlanSidecars(t *testing.T) {
	now := time.Unix(1000, 0)
	always := corev1.ContainerRestartPolicyAlways
	p := pod("job", "u3", []string{"setup", "proxy", "migrate"}, "main")
	p.Spec.InitContainers[1].RestartPolicy = &always // proxy is a sidecar
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	started := ContainerState{Exists: true, State: protocol.StateRunning, Started: true}
	cs := func(kv ...any) map[string]ContainerState {
		m := map[string]ContainerState{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(ContainerState)
		}
		return m
	}
	cases := []struct {
		name string
		cs   map[string]ContainerState
		want []string
	}{
		{"init containers in order: the first", nil, []string{"StartContainer job/setup"}},
		{"then the sidecar", cs("setup", completed), []string{"StartContainer job/proxy"}},
		{"a sidecar being created holds the next", cs("setup", completed, "proxy", ContainerState{Exists: true, State: protocol.StateCreating}), nil},
		{"a running sidecar not started (startup probe) holds the next", cs("setup", completed, "proxy", running), nil},
		{"a started sidecar lets the next start, without exiting", cs("setup", completed, "proxy", started), []string{"StartContainer job/migrate"}},
		{"app containers once the rest completed", cs("setup", completed, "proxy", started, "migrate", completed), []string{"StartContainer job/main"}},
		{"a sidecar backing off before it ever started: wait", cs("setup", completed, "proxy", backoff), nil},
		{"initialized: a sidecar backing off holds nothing up", cs("setup", completed, "proxy", backoff, "migrate", completed, "main", running), nil},
		{"app container exited for good: the sidecars stop", cs("setup", completed, "proxy", started, "migrate", completed, "main", completed), []string{"StopSidecars job"}},
		{"app container failed for good: the sidecars stop", cs("setup", completed, "proxy", backoff, "migrate", completed, "main", failed), []string{"StopSidecars job"}},
		{"sidecars stopped: nothing more", cs("setup", completed, "proxy", ContainerState{Exists: true, State: protocol.StateExited, ExitCode: 143}, "migrate", completed, "main", completed), nil},
		{"an init container failed for good: the sidecars stop", cs("setup", completed, "proxy", started, "migrate", failed), []string{"StopSidecars job"}},
		{"app container backing off: the sidecars stay", cs("setup", completed, "proxy", started, "migrate", completed, "main", backoff), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := summary(Plan([]*corev1.Pod{p}, Observed{"u3": {Pod: p, Sandbox: true, Containers: tc.cs}}, now))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Plan = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlanReasons(t *testing.T) {
	web := pod("web", "u1", nil, "app")
	acts := Plan([]*corev1.Pod{pod("web", "u9", nil, "app")}, Observed{"u1": {Pod: web, Sandbox: true}}, time.Now())
	if len(acts) != 1 || acts[0].Reason != "manifest changed" {
		t.Errorf("%v", acts)
	}
	acts = Plan(nil, Observed{"u1": {Pod: web, Sandbox: true}}, time.Now())
	if len(acts) != 1 || acts[0].Reason != "manifest removed" {
		t.Errorf("%v", acts)
	}
}
