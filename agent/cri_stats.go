package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/metrics"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/cri/record"
	criserver "github.com/agentd-project/agentd/cri/server"
)

// criCgroups reads the CRI's containers' and sandboxes' cgroups.
var criCgroups = sync.OnceValue(func() *metrics.CgroupReader { return hostCgroups() })

// cgroupStats is a cgroup's CPU and memory usage as the CRI reports it, read
// at now; a cgroup that cannot be read (a container not running) gives
// usage 0 with the time of the reading.
func cgroupStats(path string, now time.Time) (*runtimeapi.CpuUsage, *runtimeapi.MemoryUsage) {
	u, _ := criCgroups().Read(path)
	ts := now.UnixNano()
	return &runtimeapi.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: u.CPUNanos}},
		&runtimeapi.MemoryUsage{Timestamp: ts, WorkingSetBytes: &runtimeapi.UInt64Value{Value: u.WorkingSet},
			UsageBytes: &runtimeapi.UInt64Value{Value: u.Memory}, RssBytes: &runtimeapi.UInt64Value{Value: u.RSS}}
}

// criContainerStats is a container's stats from its cgroup.
func criContainerStats(c *record.Container, now time.Time) *runtimeapi.ContainerStats {
	cpu, mem := cgroupStats(c.Config.Cgroup.Path, now)
	return &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: c.ID, Metadata: c.Metadata, Labels: c.Labels, Annotations: c.Annotations},
		Cpu:        cpu, Memory: mem,
		// TODO: the writable layer's usage (the run's upper directory).
		WritableLayer: &runtimeapi.FilesystemUsage{Timestamp: now.UnixNano(),
			FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: c.Config.Rootfs.RunsDir}, UsedBytes: &runtimeapi.UInt64Value{}},
	}
}

// ContainerStats implements criserver.Backend.
func (b criBackend) ContainerStats(_ context.Context, id string) (*runtimeapi.ContainerStats, error) {
	_, c := b.a.criContainerRec(id)
	if c == nil {
		return nil, fmt.Errorf("container %q: %w", id, criserver.ErrNotFound)
	}
	return criContainerStats(c, time.Now()), nil
}

// PodSandboxStats implements criserver.Backend: the pod cgroup's usage, and
// each container's.
func (b criBackend) PodSandboxStats(_ context.Context, id string) (*runtimeapi.PodSandboxStats, error) {
	a := b.a
	pr := a.criSandbox(id)
	if pr == nil {
		return nil, fmt.Errorf("sandbox %q: %w", id, criserver.ErrNotFound)
	}
	a.mu.Lock()
	rec, pod := pr.cri.rec, pr.pod
	var ctrs []*record.Container
	for _, c := range pr.cri.ctrs {
		ctrs = append(ctrs, c)
	}
	a.mu.Unlock()
	if rec == nil {
		return nil, fmt.Errorf("sandbox %q: %w", id, criserver.ErrNotFound)
	}
	now := time.Now()
	cpu, mem := cgroupStats(runtime.PodCgroup(a.rt.Settings().CgroupParent, pod), now)
	st := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: id, Metadata: rec.Config.Metadata, Labels: rec.Config.Labels, Annotations: rec.Config.Annotations},
		Linux:      &runtimeapi.LinuxPodSandboxStats{Cpu: cpu, Memory: mem},
	}
	for _, c := range ctrs {
		st.Linux.Containers = append(st.Linux.Containers, criContainerStats(c, now))
	}
	return st, nil
}
