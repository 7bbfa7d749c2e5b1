package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

const criTestImage = "localhost/busybox:latest"

// criEnv is an agentd's CRI runtime service with the helpers the lifecycle tests share.
type criEnv struct {
	t   *testing.T
	a   *agent
	ctx context.Context
	rt  internalapi.RuntimeService
}

func newCRIEnv(t *testing.T, a *agent) *criEnv {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	e := &criEnv{t: t, a: a, ctx: ctx}
	e.connect()
	// Sandboxes left by a failing test go before the harness's cleanup, which
	// expects no mounts: their pinned namespaces are mounts.
	t.Cleanup(func() {
		if !a.running() {
			return
		}
		list, _ := e.rt.ListPodSandbox(ctx, nil)
		for _, sb := range list {
			_ = e.rt.RemovePodSandbox(ctx, sb.Id)
		}
	})
	return e
}

func (e *criEnv) connect() {
	e.rt, _ = criClients(e.t, e.ctx, filepath.Join(e.a.dir, "run", "cri.sock"))
	e.a.eventually(60*time.Second, "NetworkReady", func() (bool, string) {
		st, err := e.rt.Status(e.ctx, false)
		if err != nil {
			return false, err.Error()
		}
		for _, c := range st.GetStatus().GetConditions() {
			if c.Type == runtimeapi.NetworkReady && c.Status {
				return true, ""
			}
		}
		return false, st.String()
	})
}

func (e *criEnv) sandboxConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name + "-uid"},
		Hostname:     name + "-host",
		LogDirectory: filepath.Join(e.a.dir, "crilogs", name),
		Labels:       map[string]string{"app": name},
		Annotations:  map[string]string{"kept": "as given"},
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"example.test"}, Options: []string{"ndots:3"}},
	}
}

func (e *criEnv) runSandbox(cfg *runtimeapi.PodSandboxConfig) string {
	e.t.Helper()
	id, err := e.rt.RunPodSandbox(e.ctx, cfg, "")
	if err != nil {
		e.t.Fatalf("RunPodSandbox %s: %v\n%s", cfg.Metadata.Name, err, e.a.stderr)
	}
	return id
}

func containerConfig(name, script string, labels map[string]string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: criTestImage},
		Command:  []string{"sh", "-c", script},
		LogPath:  name + "/0.log",
		Labels:   labels,
	}
}

func (e *criEnv) create(sb string, sbCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	e.t.Helper()
	id, err := e.rt.CreateContainer(e.ctx, sb, cfg, sbCfg)
	if err != nil {
		e.t.Fatalf("CreateContainer %s: %v\n%s", cfg.Metadata.Name, err, e.a.stderr)
	}
	return id
}

func (e *criEnv) start(id string) {
	e.t.Helper()
	if err := e.rt.StartContainer(e.ctx, id); err != nil {
		e.t.Fatalf("StartContainer %s: %v\n%s", id, err, e.a.stderr)
	}
}

func (e *criEnv) status(id string) *runtimeapi.ContainerStatus {
	e.t.Helper()
	st, err := e.rt.ContainerStatus(e.ctx, id, false)
	if err != nil {
		e.t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return st.GetStatus()
}

func (e *criEnv) waitState(id string, want runtimeapi.ContainerState) *runtimeapi.ContainerStatus {
	e.t.Helper()
	var st *runtimeapi.ContainerStatus
	e.a.eventually(60*time.Second, "container "+id[:12]+" "+want.String(), func() (bool, string) {
		s, err := e.rt.ContainerStatus(e.ctx, id, false)
		if err != nil {
			return false, err.Error()
		}
		st = s.GetStatus()
		return st.State == want, st.String()
	})
	return st
}

func (e *criEnv) waitLog(path string, want ...string) {
	e.t.Helper()
	e.a.eventually(60*time.Second, "log "+path+" to say "+strings.Join(want, ", "), func() (bool, string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				return false, string(b)
			}
		}
		return true, ""
	})
}

func (e *criEnv) sandboxState(id string) runtimeapi.PodSandboxState {
	e.t.Helper()
	st, err := e.rt.PodSandboxStatus(e.ctx, id, false)
	if err != nil {
		e.t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	return st.GetStatus().GetState()
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("%s: %v (code %v), want %v", what, err, status.Code(err), want)
	}
}

// TestE2ECRILifecycle: through cri-client, as kubelet drives a runtime: a sandbox with its hostname and DNS config,
// containers that log to the file the client names, exit with their codes, are listed by the filters, have
// cgroup stats, stop and are removed; the CRI's idempotence and NotFound rules; requests that would make agentd
// write outside what the client gave are refused; agentctl lists the sandbox as the CRI's and will not delete it.
func TestE2ECRILifecycle(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	e := newCRIEnv(t, a)
	ctx, rt := e.ctx, e.rt

	sbCfg := e.sandboxConfig("crip")
	sb := e.runSandbox(sbCfg)
	if len(sb) != 64 {
		t.Errorf("sandbox ID %q, want 64 hex digits", sb)
	}
	st, err := rt.PodSandboxStatus(ctx, sb, false)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.GetStatus(); s.State != runtimeapi.PodSandboxState_SANDBOX_READY || !strings.HasPrefix(s.GetNetwork().GetIp(), "10.198.") ||
		s.GetMetadata().GetName() != "crip" || s.Annotations["kept"] != "as given" || s.Labels["app"] != "crip" {
		t.Errorf("PodSandboxStatus = %v, want READY with an address of the pod subnet, its metadata, labels and annotations", s)
	}
	_, err = rt.RunPodSandbox(ctx, sbCfg, "")
	wantCode(t, "RunPodSandbox of a name in use", err, codes.AlreadyExists)

	// agentctl: listed as the CRI's, and not deleted there.
	a.eventually(30*time.Second, "agentctl get pods to list the CRI sandbox", func() (bool, string) {
		out := a.ctl("get", "pods", "-o", "json")
		var list corev1.PodList
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return false, err.Error()
		}
		for _, p := range list.Items {
			if p.Name == "crip" && p.Annotations["kubernetes.io/config.source"] == "cri" && p.Annotations["agentd.io/cri.sandbox-id"] == sb {
				return true, ""
			}
		}
		return false, out
	})
	if out, err := a.try("delete", "pod", "crip", "--unmanaged"); err == nil || !strings.Contains(out, "CRI") {
		t.Errorf("agentctl delete of a CRI pod: %v\n%s; want a refusal naming the CRI", err, out)
	}

	// A container that runs: CREATED, then RUNNING, its log in the client's file.
	app := e.create(sb, sbCfg, containerConfig("app", "echo hello-cri; hostname; cat /etc/resolv.conf; exec sleep 3600", map[string]string{"role": "app"}))
	if s := e.status(app); s.State != runtimeapi.ContainerState_CONTAINER_CREATED || s.LogPath != filepath.Join(sbCfg.LogDirectory, "app/0.log") || s.ImageRef == "" {
		t.Errorf("ContainerStatus after create = %v, want CREATED with its log path and image", s)
	}
	_, err = rt.CreateContainer(ctx, sb, containerConfig("app", "true", nil), sbCfg)
	wantCode(t, "CreateContainer of a name in use", err, codes.AlreadyExists)
	e.start(app)
	wantCode(t, "StartContainer twice", rt.StartContainer(ctx, app), codes.FailedPrecondition)
	e.waitState(app, runtimeapi.ContainerState_CONTAINER_RUNNING)
	appLog := filepath.Join(sbCfg.LogDirectory, "app", "0.log")
	e.waitLog(appLog, " stdout F hello-cri\n", " stdout F crip-host\n", "nameserver 10.0.0.10", "search example.test", "options ndots:3")

	// A container that exits with its code.
	exiter := e.create(sb, sbCfg, containerConfig("exiter", "echo bye >&2; exit 3", map[string]string{"role": "exiter"}))
	e.start(exiter)
	if s := e.waitState(exiter, runtimeapi.ContainerState_CONTAINER_EXITED); s.ExitCode != 3 || s.Reason != "Error" || s.StartedAt == 0 || s.FinishedAt < s.StartedAt {
		t.Errorf("exited container status = %v, want exit code 3, reason Error and its times", s)
	}
	e.waitLog(filepath.Join(sbCfg.LogDirectory, "exiter", "0.log"), " stderr F bye\n")
	created := e.create(sb, sbCfg, containerConfig("idle", "true", nil))

	// Filters.
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{"all", nil, []string{app, exiter, created}},
		{"label", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"role": "exiter"}}, []string{exiter}},
		{"running", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}, []string{app}},
		{"created", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_CREATED}}, []string{created}},
		{"exited", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, []string{exiter}},
		{"sandbox", &runtimeapi.ContainerFilter{PodSandboxId: sb}, []string{app, exiter, created}},
		{"sandbox prefix", &runtimeapi.ContainerFilter{PodSandboxId: sb[:8]}, []string{app, exiter, created}},
		{"another sandbox", &runtimeapi.ContainerFilter{PodSandboxId: strings.Repeat("0", 64)}, nil},
		{"ID prefix", &runtimeapi.ContainerFilter{Id: app[:12]}, []string{app}},
		{"label and state", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"role": "app"}, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, nil},
	} {
		list, err := rt.ListContainers(ctx, tc.filter)
		if err != nil {
			t.Fatalf("ListContainers %s: %v", tc.name, err)
		}
		got := map[string]bool{}
		for _, c := range list {
			got[c.Id] = true
			if c.PodSandboxId != sb || c.Metadata == nil || c.Image.GetImage() != criTestImage {
				t.Errorf("ListContainers %s: %v", tc.name, c)
			}
		}
		if len(got) != len(tc.want) {
			t.Errorf("ListContainers %s = %d containers, want %d", tc.name, len(got), len(tc.want))
		}
		for _, w := range tc.want {
			if !got[w] {
				t.Errorf("ListContainers %s lacks %s", tc.name, w[:12])
			}
		}
	}
	if list, err := rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "crip"}}); err != nil || len(list) != 1 || list[0].Id != sb {
		t.Errorf("ListPodSandbox by label = %v, %v", list, err)
	}
	if list, err := rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}); err != nil || len(list) != 0 {
		t.Errorf("ListPodSandbox NOTREADY = %v, %v; want none", list, err)
	}

	// Stats from the cgroups.
	cs, err := rt.ContainerStats(ctx, app)
	if err != nil || cs.GetAttributes().GetId() != app || cs.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 ||
		cs.GetMemory().GetWorkingSetBytes().GetValue() == 0 || cs.GetCpu().GetTimestamp() == 0 {
		t.Errorf("ContainerStats = %v, %v; want CPU time and memory of the running container", cs, err)
	}
	if all, err := rt.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{PodSandboxId: sb}); err != nil || len(all) != 3 {
		t.Errorf("ListContainerStats = %v, %v; want 3", all, err)
	}
	ps, err := rt.PodSandboxStats(ctx, sb)
	if err != nil || ps.GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || len(ps.GetLinux().GetContainers()) != 3 {
		t.Errorf("PodSandboxStats = %v, %v; want the pod's CPU time and its 3 containers", ps, err)
	}
	if all, err := rt.ListPodSandboxStats(ctx, nil); err != nil || len(all) != 1 {
		t.Errorf("ListPodSandboxStats = %v, %v; want 1", all, err)
	}

	// The log is reopened after the client rotated it.
	if err := os.Rename(appLog, appLog+".1"); err != nil {
		t.Fatal(err)
	}
	if err := rt.ReopenContainerLog(ctx, app); err != nil {
		t.Errorf("ReopenContainerLog: %v", err)
	}
	if _, err := os.Stat(appLog); err != nil {
		t.Errorf("after ReopenContainerLog: %v, want a new log file", err)
	}
	wantCode(t, "ReopenContainerLog of an exited container", rt.ReopenContainerLog(ctx, exiter), codes.FailedPrecondition)

	// Refused at the edge.
	bad := containerConfig("bad", "true", nil)
	bad.LogPath = "../../escape.log"
	_, err = rt.CreateContainer(ctx, sb, bad, sbCfg)
	wantCode(t, "CreateContainer with a log path leaving the log directory", err, codes.InvalidArgument)
	bad = containerConfig("bad", "true", nil)
	bad.Mounts = []*runtimeapi.Mount{{HostPath: "relative/dir", ContainerPath: "/mnt"}}
	_, err = rt.CreateContainer(ctx, sb, bad, sbCfg)
	wantCode(t, "CreateContainer with a relative host path", err, codes.InvalidArgument)
	bad = containerConfig("bad", "true", nil)
	bad.Image.Image = "localhost/absent:1"
	_, err = rt.CreateContainer(ctx, sb, bad, sbCfg)
	wantCode(t, "CreateContainer of an absent image", err, codes.NotFound)
	badSb := e.sandboxConfig("badsb")
	badSb.LogDirectory = "relative/logs"
	_, err = rt.RunPodSandbox(ctx, badSb, "")
	wantCode(t, "RunPodSandbox with a relative log directory", err, codes.InvalidArgument)
	if _, err := os.Stat(filepath.Join(a.dir, "escape.log")); err == nil {
		t.Errorf("a log file was written outside the log directory")
	}

	// NotFound and idempotence.
	unknown := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"ContainerStatus unknown", func() error { _, err := rt.ContainerStatus(ctx, unknown, false); return err }(), codes.NotFound},
		{"ContainerStatus not an ID", func() error { _, err := rt.ContainerStatus(ctx, "../../etc", false); return err }(), codes.NotFound},
		{"PodSandboxStatus unknown", func() error { _, err := rt.PodSandboxStatus(ctx, unknown, false); return err }(), codes.NotFound},
		{"StartContainer unknown", rt.StartContainer(ctx, unknown), codes.NotFound},
		{"ContainerStats unknown", func() error { _, err := rt.ContainerStats(ctx, unknown); return err }(), codes.NotFound},
		{"PodSandboxStats unknown", func() error { _, err := rt.PodSandboxStats(ctx, unknown); return err }(), codes.NotFound},
		{"CreateContainer in an unknown sandbox", func() error {
			_, err := rt.CreateContainer(ctx, unknown, containerConfig("x", "true", nil), sbCfg)
			return err
		}(), codes.NotFound},
		{"ReopenContainerLog unknown", rt.ReopenContainerLog(ctx, unknown), codes.NotFound},
		{"StopContainer unknown", rt.StopContainer(ctx, unknown, 0), codes.OK},
		{"RemoveContainer unknown", rt.RemoveContainer(ctx, unknown), codes.OK},
		{"StopPodSandbox unknown", rt.StopPodSandbox(ctx, unknown), codes.OK},
		{"RemovePodSandbox unknown", rt.RemovePodSandbox(ctx, unknown), codes.OK},
		{"StopContainer not an ID", rt.StopContainer(ctx, "../x", 0), codes.OK},
	} {
		wantCode(t, tc.name, tc.err, tc.want)
	}

	// Stop and remove a container: twice each.
	if err := rt.StopContainer(ctx, app, 0); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if s := e.status(app); s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.ExitCode != 137 {
		t.Errorf("status after StopContainer = %v, want EXITED 137", s)
	}
	wantCode(t, "StopContainer again", rt.StopContainer(ctx, app, 0), codes.OK)
	if err := rt.RemoveContainer(ctx, exiter); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	wantCode(t, "RemoveContainer again", rt.RemoveContainer(ctx, exiter), codes.OK)
	_, err = rt.ContainerStatus(ctx, exiter, false)
	wantCode(t, "ContainerStatus of a removed container", err, codes.NotFound)
	// Its name is free again.
	again := e.create(sb, sbCfg, containerConfig("exiter", "true", nil))

	// Stop the sandbox: NOTREADY, no new container; twice is fine.
	if err := rt.StopPodSandbox(ctx, sb); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if got := e.sandboxState(sb); got != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("sandbox after StopPodSandbox: %v", got)
	}
	wantCode(t, "StopPodSandbox again", rt.StopPodSandbox(ctx, sb), codes.OK)
	_, err = rt.CreateContainer(ctx, sb, containerConfig("late", "true", nil), sbCfg)
	wantCode(t, "CreateContainer in a stopped sandbox", err, codes.FailedPrecondition)
	wantCode(t, "StartContainer in a stopped sandbox", rt.StartContainer(ctx, again), codes.FailedPrecondition)

	if err := rt.RemovePodSandbox(ctx, sb); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	wantCode(t, "RemovePodSandbox again", rt.RemovePodSandbox(ctx, sb), codes.OK)
	if list, _ := rt.ListPodSandbox(ctx, nil); len(list) != 0 {
		t.Errorf("ListPodSandbox after removal = %v", list)
	}
	if list, _ := rt.ListContainers(ctx, nil); len(list) != 0 {
		t.Errorf("ListContainers after removal = %v", list)
	}
	if out := a.ctl("get", "pods"); strings.Contains(out, "crip") {
		t.Errorf("agentctl get pods after RemovePodSandbox:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "run", "pods", sb)); !os.IsNotExist(err) {
		t.Errorf("sandbox directory after RemovePodSandbox: %v", err)
	}
	// The name is free again.
	sb2 := e.runSandbox(sbCfg)
	if err := rt.RemovePodSandbox(ctx, sb2); err != nil {
		t.Fatal(err)
	}
}

// TestE2ECRIRestore: agentd restarts with live restore on: the CRI client sees the same sandbox and container IDs, a
// running container still RUNNING (the same run), one that exited while agentd was away EXITED with its code, one
// never started CREATED and startable. With live restore off agentd stops the containers when it stops and the
// sandbox comes back NOTREADY, with the same IDs: never dropped.
func TestE2ECRIRestore(t *testing.T) {
	a := newAgent(t, map[string]any{"live-restore": true})
	a.start()
	e := newCRIEnv(t, a)
	trigger := filepath.Join(a.dir, "trigger")
	if err := os.MkdirAll(trigger, 0o755); err != nil {
		t.Fatal(err)
	}
	sbCfg := e.sandboxConfig("restored")
	sb := e.runSandbox(sbCfg)
	runner := e.create(sb, sbCfg, containerConfig("runner", "echo up; exec sleep 3600", nil))
	e.start(runner)
	waiterCfg := containerConfig("waiter", "echo waiting; while [ ! -e /trigger/go ]; do sleep 0.1; done; echo done; exit 7", nil)
	waiterCfg.Mounts = []*runtimeapi.Mount{{HostPath: trigger, ContainerPath: "/trigger"}}
	waiter := e.create(sb, sbCfg, waiterCfg)
	e.start(waiter)
	idle := e.create(sb, sbCfg, containerConfig("idle", "echo idle-started; exec sleep 3600", nil))
	e.waitLog(filepath.Join(sbCfg.LogDirectory, "waiter", "0.log"), "waiting")
	before := e.waitState(runner, runtimeapi.ContainerState_CONTAINER_RUNNING)

	a.stop(unix.SIGTERM, 60*time.Second)
	// While agentd is away the waiter exits; its monitor records it.
	if err := os.WriteFile(filepath.Join(trigger, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waiterDir := protocol.StateDir(filepath.Join(a.dir, "run"), sb+"_c"+waiter[:15])
	a.eventually(60*time.Second, "the waiter's monitor to record its exit", func() (bool, string) {
		j, err := protocol.ReadJournal(waiterDir)
		if err != nil {
			return false, err.Error()
		}
		return j.State == protocol.StateExited, j.State
	})
	a.start()
	e.connect()
	if got := e.sandboxState(sb); got != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("sandbox after a live restore: %v, want READY", got)
	}
	if s := e.status(runner); s.State != runtimeapi.ContainerState_CONTAINER_RUNNING || s.StartedAt != before.StartedAt {
		t.Errorf("runner after a live restore = %v, want the same run RUNNING (started %d)", s, before.StartedAt)
	}
	if s := e.status(waiter); s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.ExitCode != 7 {
		t.Errorf("waiter after a live restore = %v, want EXITED 7", s)
	}
	if s := e.status(idle); s.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("idle after a live restore = %v, want CREATED", s)
	}
	e.start(idle)
	e.waitState(idle, runtimeapi.ContainerState_CONTAINER_RUNNING)
	e.waitLog(filepath.Join(sbCfg.LogDirectory, "idle", "0.log"), "idle-started")
	_, err := e.rt.CreateContainer(e.ctx, sb, containerConfig("runner", "true", nil), sbCfg)
	wantCode(t, "CreateContainer of a name an adopted container holds", err, codes.AlreadyExists)

	// Live restore off: stopped with agentd, NOTREADY after, same IDs.
	setConfig(t, a, "live-restore", false)
	a.stop(unix.SIGTERM, 60*time.Second)
	a.start()
	e.connect()
	if got := e.sandboxState(sb); got != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("sandbox after a restart without live restore: %v, want NOTREADY", got)
	}
	for _, id := range []string{runner, idle} {
		if s := e.status(id); s.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			t.Errorf("container %s after a restart without live restore = %v, want EXITED", id[:12], s)
		}
	}
	if s := e.status(waiter); s.ExitCode != 7 {
		t.Errorf("waiter after a second restart = %v, want its exit code 7 still", s)
	}
	if list, err := e.rt.ListPodSandbox(e.ctx, nil); err != nil || len(list) != 1 || list[0].Id != sb {
		t.Errorf("ListPodSandbox after restarts = %v, %v; want the one sandbox", list, err)
	}
	if err := e.rt.RemovePodSandbox(e.ctx, sb); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if list, _ := e.rt.ListContainers(e.ctx, nil); len(list) != 0 {
		t.Errorf("containers after RemovePodSandbox: %v", list)
	}
}
