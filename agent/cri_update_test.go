package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/runtime/runtimetest"
	"github.com/agentd-project/agentd/cri/record"
	criserver "github.com/agentd-project/agentd/cri/server"
)

// TestCRIUpdateContainerResources: a created container's record gets the new
// limits for its start, without a monitor; a running one's monitor is asked
// and the record gets what it says is in force; an exited one is refused; and
// ContainerStatus reports what the record says.
func TestCRIUpdateContainerResources(t *testing.T) {
	dir := t.TempDir()
	rt := runtimetest.New(filepath.Join(dir, "run"))
	a := newAgent(Options{RunDir: filepath.Join(dir, "run"), Root: filepath.Join(dir, "root"), Log: logr.Discard()}, rt, &fakeImages{})
	b := criBackend{a}
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "crip", Namespace: "default", Uid: "u"}}
	pod, err := record.SandboxPod(testSandboxID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sbDir := filepath.Join(dir, "run", "pods", testSandboxID)
	ctr := func(n byte, started bool) *record.Container {
		id := string(n) + testSandboxID[1:]
		return &record.Container{ID: id, SandboxID: testSandboxID, Metadata: &runtimeapi.ContainerMetadata{Name: "app" + string(n)}, Image: "busybox",
			StartedOnce: started, Config: &protocol.ContainerConfig{ID: runtime.MonitorID(testSandboxID, record.ContainerName(id)), Name: record.ContainerName(id),
				Restart: protocol.Restart{Policy: protocol.RestartNever}, Cgroup: protocol.Cgroup{Path: "/agent/x", MemoryLimit: 32 << 20, CPUShares: 2}}}
	}
	created, running, exited := ctr('1', false), ctr('2', true), ctr('3', true)
	a.pods[pod.UID] = &podRecord{pod: pod, sandbox: &runtime.Sandbox{Dir: sbDir}, startTime: time.Now(), containers: map[string]*ctrRecord{},
		cri: &criPod{rec: &record.Sandbox{ID: testSandboxID, Config: cfg, State: record.StateReady},
			ctrs: map[string]*record.Container{created.ID: created, running.ID: running, exited.ID: exited}}}
	for _, c := range []*record.Container{running, exited} {
		if _, err := rt.Start(context.Background(), c.Config); err != nil {
			t.Fatal(err)
		}
	}
	rt.Exit(exited.Config.ID, 0)

	mem, quota, cpus := int64(64<<20), int64(50000), "0"
	upd := &protocol.Resources{MemoryLimit: &mem, CPUQuota: &quota, CpusetCpus: &cpus}
	resources := func(id string) *runtimeapi.LinuxContainerResources {
		t.Helper()
		st, err := b.ContainerStatus(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return st.GetResources().GetLinux()
	}
	saved := func(id string) *record.Container {
		t.Helper()
		var c record.Container
		data, err := os.ReadFile(filepath.Join(criRecordsDir(sbDir), id+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	want := protocol.Cgroup{Path: "/agent/x", MemoryLimit: 64 << 20, CPUShares: 2, CPUQuota: 50000, CpusetCpus: "0"}
	wantStatus := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 2, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0"}

	t.Run("created", func(t *testing.T) {
		if err := b.UpdateContainerResources(context.Background(), created.ID, upd); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(rt.Calls(), "Update "+created.Config.ID) {
			t.Errorf("a created container's monitor was asked: %v", rt.Calls())
		}
		if got := saved(created.ID).Config.Cgroup; got != want {
			t.Errorf("record's cgroup %+v, want %+v", got, want)
		}
		if got := resources(created.ID); got.String() != wantStatus.String() {
			t.Errorf("status resources %v, want %v", got, wantStatus)
		}
	})
	t.Run("running", func(t *testing.T) {
		if err := b.UpdateContainerResources(context.Background(), running.ID, upd); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(rt.Calls(), "Update "+running.Config.ID) {
			t.Errorf("the monitor was not asked: %v", rt.Calls())
		}
		if got := rt.Config(running.Config.ID).Cgroup; got != want {
			t.Errorf("monitor's cgroup %+v, want %+v", got, want)
		}
		if got := saved(running.ID).Config.Cgroup; got != want {
			t.Errorf("record's cgroup %+v, want %+v", got, want)
		}
		if got := resources(running.ID); got.String() != wantStatus.String() {
			t.Errorf("status resources %v, want %v", got, wantStatus)
		}
	})
	t.Run("exited", func(t *testing.T) {
		err := b.UpdateContainerResources(context.Background(), exited.ID, upd)
		if !errors.Is(err, criserver.ErrFailedPrecondition) {
			t.Errorf("update of an exited container: %v, want FailedPrecondition", err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		err := b.UpdateContainerResources(context.Background(), "9"+testSandboxID[1:], upd)
		if !errors.Is(err, criserver.ErrNotFound) {
			t.Errorf("update of an unknown container: %v, want NotFound", err)
		}
	})
	// What the monitor refuses keeps the record as it was and says why.
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"old monitor", fmt.Errorf("update: %w: speaks 1.1", protocol.ErrUnsupported), protocol.ErrUnsupported},
		{"kernel refusal", &protocol.Error{Code: protocol.ErrCodeInvalid, Message: "device or resource busy"}, criserver.ErrInvalidArgument},
		{"exited meanwhile", &protocol.Error{Code: protocol.ErrCodeNotRunning, Message: "not running"}, criserver.ErrFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt.FailUpdate(running.Config.ID, tc.err)
			defer rt.FailUpdate(running.Config.ID, nil)
			big := int64(1 << 30)
			err := b.UpdateContainerResources(context.Background(), running.ID, &protocol.Resources{MemoryLimit: &big})
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if got := saved(running.ID).Config.Cgroup; got != want {
				t.Errorf("record's cgroup %+v after a refused update, want %+v", got, want)
			}
		})
	}
}
