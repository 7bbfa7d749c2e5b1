package agent

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/reconcile"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/runtime/runtimetest"
	"github.com/agentd-project/agentd/agent/source"
	"github.com/agentd-project/agentd/cri/record"
)

const testSandboxID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestPlanLeavesCRISandboxesAlone: a CRI sandbox with a running container is in no manifest snapshot, and the
// reconciler plans nothing for it (a static pod in the same place would be killed).
func TestPlanLeavesCRISandboxesAlone(t *testing.T) {
	dir := t.TempDir()
	a := newAgent(Options{RunDir: filepath.Join(dir, "run"), Root: filepath.Join(dir, "root"), Log: logr.Discard()},
		runtimetest.New(filepath.Join(dir, "run")), &fakeImages{})
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "crip", Namespace: "default", Uid: "u"}}
	pod, err := record.SandboxPod(testSandboxID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mid := runtime.MonitorID(testSandboxID, "c0123456789abcd")
	a.pods[pod.UID] = &podRecord{pod: pod, sandbox: &runtime.Sandbox{}, startTime: time.Now(), containers: map[string]*ctrRecord{"c0123456789abcd": {id: mid}},
		cri: &criPod{rec: &record.Sandbox{ID: testSandboxID, Config: cfg, State: record.StateReady}, ctrs: map[string]*record.Container{}}}
	a.status.SetJournal(mid, &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{{StartedAt: time.Now()}}})
	a.applySnapshot(source.Snapshot{}) // synced: an empty manifest directory
	if acts := a.plan(); len(acts) != 0 {
		t.Errorf("plan with a CRI sandbox and no manifest = %v, want nothing", acts)
	}

	// The same without the CRI mark is a static pod whose manifest is gone: killed. The test can fail.
	static := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "static", Namespace: "default", UID: "static-uid"}}
	a.pods[static.UID] = &podRecord{pod: static, sandbox: &runtime.Sandbox{}, startTime: time.Now(), containers: map[string]*ctrRecord{}}
	acts := a.plan()
	if len(acts) != 1 || acts[0].Kind != reconcile.KillPod || acts[0].UID != static.UID {
		t.Errorf("plan with a static pod and no manifest = %v, want its KillPod only", acts)
	}
}

// TestCRIPodListed: `agentctl get pods` shows a CRI sandbox by its CRI names, with source cri, one container per CRI
// name (its latest attempt) and its state.
func TestCRIPodListed(t *testing.T) {
	dir := t.TempDir()
	a := newAgent(Options{RunDir: filepath.Join(dir, "run"), Root: filepath.Join(dir, "root"), Log: logr.Discard()},
		runtimetest.New(filepath.Join(dir, "run")), &fakeImages{})
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "crip", Namespace: "kube-system", Uid: "u"}}
	pod, _ := record.SandboxPod(testSandboxID, cfg)
	ctr := func(id string, attempt uint32) *record.Container {
		return &record.Container{ID: id, SandboxID: testSandboxID, Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: attempt}, Image: "busybox",
			Config: &protocol.ContainerConfig{ID: runtime.MonitorID(testSandboxID, record.ContainerName(id)), Name: record.ContainerName(id)}}
	}
	old, cur := ctr("1"+testSandboxID[1:], 0), ctr("2"+testSandboxID[1:], 1)
	a.pods[pod.UID] = &podRecord{pod: pod, sandbox: &runtime.Sandbox{PodIP: "10.77.0.9"}, startTime: time.Now(), containers: map[string]*ctrRecord{},
		cri: &criPod{rec: &record.Sandbox{ID: testSandboxID, Config: cfg, State: record.StateReady}, ctrs: map[string]*record.Container{old.ID: old, cur.ID: cur}}}
	a.status.SetJournal(old.Config.ID, &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{{StartedAt: time.Now(), Exit: &protocol.Exit{ExitCode: 1, Reason: "Error"}}}})
	a.status.SetJournal(cur.Config.ID, &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{{StartedAt: time.Now()}}})
	pods := a.sortedPods()
	if len(pods) != 1 {
		t.Fatalf("listed %d pods, want 1", len(pods))
	}
	p := pods[0]
	if p.Name != "crip" || p.Namespace != "kube-system" || p.Annotations[record.AnnotationConfigSource] != record.SourceCRI || p.Annotations[record.AnnotationSandboxID] != testSandboxID {
		t.Errorf("pod %s/%s annotations %v", p.Namespace, p.Name, p.Annotations)
	}
	if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].Name != "app" || p.Status.ContainerStatuses[0].State.Running == nil || p.Status.PodIP != "10.77.0.9" {
		t.Errorf("status %+v, want container app running (its latest attempt) and the pod IP", p.Status)
	}
}
