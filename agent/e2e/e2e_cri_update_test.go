package e2e

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// criCgroup is the cgroup of CRI container id of sandbox sb, as its monitor's
// config names it.
func (e *criEnv) criCgroup(sb, id string) string {
	e.t.Helper()
	cfg, err := protocol.ReadConfig(protocol.StateDir(filepath.Join(e.a.dir, "run"), sb+"_c"+id[:15]))
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg.Cgroup.Path
}

// cgroupMemory and cgroupQuota read a cgroup's memory limit and CPU quota (v1's
// files, or v2's memory.max and cpu.max).
func cgroupMemory(t *testing.T, cg string) string {
	return readCgroup(t, cg, "memory", "memory.limit_in_bytes", "memory.max")
}

func cgroupQuota(t *testing.T, cg string) string {
	q := readCgroup(t, cg, "cpu", "cpu.cfs_quota_us", "cpu.max")
	if f := splitFirst(q); f != "" {
		return f // v2: "<quota> <period>"
	}
	return q
}

func splitFirst(s string) string {
	for i := range len(s) {
		if s[i] == ' ' {
			return s[:i]
		}
	}
	return ""
}

func (e *criEnv) wantResources(what, id string, memory, quota int64) {
	e.t.Helper()
	r := e.status(id).GetResources().GetLinux()
	if r.GetMemoryLimitInBytes() != memory || r.GetCpuQuota() != quota || r.GetCpuPeriod() != 100000 {
		e.t.Errorf("%s: ContainerStatus resources %v, want memory %d, quota %d/100000", what, r, memory, quota)
	}
}

// TestE2ECRIUpdateContainerResources: through cri-client, as kubelet resizes a
// container in place: a running container's memory limit and CPU quota change
// in its cgroup at once and in ContainerStatus; a created one starts with what
// it was updated to; bad values are InvalidArgument and an exited container is
// FailedPrecondition; after agentd restarts with live restore the adopted
// container keeps its limits, reports them, and can be updated again.
func TestE2ECRIUpdateContainerResources(t *testing.T) {
	a := newAgent(t, map[string]any{"live-restore": true})
	a.start()
	e := newCRIEnv(t, a)
	ctx := e.ctx

	sbCfg := e.sandboxConfig("resize")
	sb := e.runSandbox(sbCfg)
	limited := func(name, script string) *runtimeapi.ContainerConfig {
		c := containerConfig(name, script, nil)
		c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: 64 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512}}
		return c
	}
	app := e.create(sb, sbCfg, limited("app", "echo up; exec sleep 3600"))
	e.start(app)
	e.waitLog(filepath.Join(sbCfg.LogDirectory, "app", "0.log"), "up")
	e.waitState(app, runtimeapi.ContainerState_CONTAINER_RUNNING)
	cg := e.criCgroup(sb, app)
	if got := cgroupMemory(t, cg); got != strconv.Itoa(64<<20) {
		t.Fatalf("memory limit at the start %s, want %d", got, 64<<20)
	}
	e.wantResources("at the start", app, 64<<20, 50000)

	update := func(id string, r *runtimeapi.LinuxContainerResources) error {
		return e.rt.UpdateContainerResources(ctx, id, &runtimeapi.ContainerResources{Linux: r}) // e.rt: reconnected after a restart
	}
	if err := update(app, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuQuota: 150000, CpuPeriod: 100000}); err != nil {
		t.Fatalf("UpdateContainerResources: %v\n%s", err, a.stderr)
	}
	if got := cgroupMemory(t, cg); got != strconv.Itoa(128<<20) {
		t.Errorf("memory limit after the update %s, want %d", got, 128<<20)
	}
	if got := cgroupQuota(t, cg); got != "150000" {
		t.Errorf("cpu quota after the update %s, want 150000", got)
	}
	e.wantResources("after the update", app, 128<<20, 150000)
	if r := e.status(app).GetResources().GetLinux(); r.GetCpuShares() != 512 {
		t.Errorf("cpu shares after an update that gave none: %d, want 512 kept", r.GetCpuShares())
	}
	if s := e.status(app); s.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container after its update: %v", s)
	}

	// Refused at the edge, the container untouched.
	wantCode(t, "negative memory", update(app, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}), codes.InvalidArgument)
	wantCode(t, "absurd cpu period", update(app, &runtimeapi.LinuxContainerResources{CpuPeriod: 10 << 20}), codes.InvalidArgument)
	wantCode(t, "unknown container", update("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", &runtimeapi.LinuxContainerResources{CpuShares: 2}), codes.NotFound)
	if got := cgroupMemory(t, cg); got != strconv.Itoa(128<<20) {
		t.Errorf("memory limit after refused updates %s, want %d", got, 128<<20)
	}

	// A created container starts with its update.
	later := e.create(sb, sbCfg, limited("later", "echo later-up; exec sleep 3600"))
	if err := update(later, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 96 << 20}); err != nil {
		t.Fatalf("UpdateContainerResources of a created container: %v", err)
	}
	e.wantResources("created, updated", later, 96<<20, 50000)
	e.start(later)
	e.waitState(later, runtimeapi.ContainerState_CONTAINER_RUNNING)
	if got := cgroupMemory(t, e.criCgroup(sb, later)); got != strconv.Itoa(96<<20) {
		t.Errorf("memory limit of a container updated before its start: %s, want %d", got, 96<<20)
	}

	// An exited container is refused.
	done := e.create(sb, sbCfg, containerConfig("done", "exit 0", nil))
	e.start(done)
	e.waitState(done, runtimeapi.ContainerState_CONTAINER_EXITED)
	wantCode(t, "update of an exited container", update(done, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}), codes.FailedPrecondition)

	// agentd restarts with live restore: the same run, its limits kept and reported.
	before := e.status(app)
	a.stop(unix.SIGTERM, 60*time.Second)
	a.start()
	e.connect()
	if s := e.status(app); s.State != runtimeapi.ContainerState_CONTAINER_RUNNING || s.StartedAt != before.StartedAt {
		t.Fatalf("app after a live restore = %v, want the same run RUNNING", s)
	}
	e.wantResources("after a live restore", app, 128<<20, 150000)
	if got := cgroupMemory(t, cg); got != strconv.Itoa(128<<20) {
		t.Errorf("memory limit after a live restore %s, want %d", got, 128<<20)
	}
	// The adopted monitor takes updates too.
	if err := update(app, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 80 << 20, CpuQuota: 20000}); err != nil {
		t.Fatalf("UpdateContainerResources after a live restore: %v\n%s", err, a.stderr)
	}
	if got, q := cgroupMemory(t, cg), cgroupQuota(t, cg); got != strconv.Itoa(80<<20) || q != "20000" {
		t.Errorf("after an update of the adopted container: memory %s quota %s, want %d and 20000", got, q, 80<<20)
	}
	e.wantResources("after an update of the adopted container", app, 80<<20, 20000)

	if err := e.rt.RemovePodSandbox(ctx, sb); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}
