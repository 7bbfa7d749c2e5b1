package server

import (
	"context"
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// ContainerBackend is the container lifecycle as the CRI server sees it (part
// of Backend; the same rules). IDs may be anything a client sent; an ID that
// is not record.ValidID is unknown.
type ContainerBackend interface {
	// CreateContainer makes a container in sandbox sandboxID (CREATED) and
	// returns its ID. An unknown sandbox or image is an error wrapping
	// ErrNotFound; a sandbox that is not READY one wrapping
	// ErrFailedPrecondition; a name (record.ContainerKey) the sandbox holds
	// already one wrapping ErrAlreadyExists; a malformed config one wrapping
	// ErrInvalidArgument.
	CreateContainer(ctx context.Context, sandboxID string, cfg *runtimeapi.ContainerConfig) (string, error)
	// StartContainer starts a CREATED container; another state is an error
	// wrapping ErrFailedPrecondition, an unknown ID one wrapping ErrNotFound.
	StartContainer(ctx context.Context, id string) error
	// StopContainer stops a container (stop signal, KILL after timeout
	// seconds); unknown or not running: nil.
	StopContainer(ctx context.Context, id string, timeout int64) error
	// RemoveContainer stops and removes a container; unknown: nil.
	RemoveContainer(ctx context.Context, id string) error
	// ContainerStatus is a container's status; unknown: ErrNotFound.
	ContainerStatus(ctx context.Context, id string) (*runtimeapi.ContainerStatus, error)
	// Containers lists every CRI container.
	Containers(ctx context.Context) ([]*runtimeapi.Container, error)
	// ReopenContainerLog has a running container's monitor reopen its log
	// file; unknown: ErrNotFound; not running: ErrFailedPrecondition.
	ReopenContainerLog(ctx context.Context, id string) error
	// UpdateContainerResources changes a container's cgroup limits (upd,
	// checked already; a nil field stays as it is): a CREATED container's for
	// its start, a RUNNING one's at once and for every later run, and its
	// record's, so ContainerStatus reports them. An EXITED container is an
	// error wrapping ErrFailedPrecondition, an unknown ID one wrapping
	// ErrNotFound; the kernel refusing a limit (a memory limit below the
	// usage) one wrapping ErrInvalidArgument, with the kernel's message.
	UpdateContainerResources(ctx context.Context, id string, upd *protocol.Resources) error
	// ContainerStats is a container's usage from its cgroup; unknown:
	// ErrNotFound.
	ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error)
	// PodSandboxStats is a sandbox's usage from its cgroup, with its
	// containers'; unknown: ErrNotFound.
	PodSandboxStats(ctx context.Context, id string) (*runtimeapi.PodSandboxStats, error)
}

// CreateContainer implements runtimeapi.RuntimeServiceServer.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	id, err := s.b.CreateContainer(ctx, req.GetPodSandboxId(), req.GetConfig())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer implements runtimeapi.RuntimeServiceServer.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if err := s.b.StartContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer implements runtimeapi.RuntimeServiceServer.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if err := s.b.StopContainer(ctx, req.GetContainerId(), req.GetTimeout()); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer implements runtimeapi.RuntimeServiceServer.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	if err := s.b.RemoveContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// ContainerStatus implements runtimeapi.RuntimeServiceServer.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	st, err := s.b.ContainerStatus(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: st}
	if req.GetVerbose() {
		info, err := s.b.ContainerInfo(ctx, req.GetContainerId())
		if err != nil {
			return nil, err
		}
		if resp.Info, err = verboseInfo(info); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// ListContainers implements runtimeapi.RuntimeServiceServer.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	all, err := s.b.Containers(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: filterContainers(all, req.GetFilter())}, nil
}

// filterContainers keeps the containers f selects: by ID or ID prefix,
// state, sandbox ID or prefix, and labels.
func filterContainers(all []*runtimeapi.Container, f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	out := []*runtimeapi.Container{}
	for _, c := range all {
		if f != nil {
			if f.Id != "" && !strings.HasPrefix(c.Id, f.Id) ||
				f.PodSandboxId != "" && !strings.HasPrefix(c.PodSandboxId, f.PodSandboxId) ||
				f.State != nil && f.State.State != c.State ||
				!labelsMatch(c.Labels, f.LabelSelector) {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// ReopenContainerLog implements runtimeapi.RuntimeServiceServer.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	if err := s.b.ReopenContainerLog(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

// UpdateContainerResources implements runtimeapi.RuntimeServiceServer: the
// request's Linux resources, checked here (linuxResources), go to the
// backend; a limit given as 0 stays as it is, as with containerd and CRI-O.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	upd, err := linuxResources(req.GetLinux())
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", req.GetContainerId(), err)
	}
	if req.GetWindows() != nil {
		return nil, fmt.Errorf("%w: container %q: Windows resources on a Linux runtime", ErrInvalidArgument, req.GetContainerId())
	}
	if err := s.b.UpdateContainerResources(ctx, req.GetContainerId(), upd); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// linuxResources turns a CRI resource update into the monitor protocol's:
// a 0 (or "") leaves a limit as it is, a negative value, one out of the
// kernel's range (protocol.Resources.Check) or a limit agentd cannot set
// (hugepages, cgroup v2's unified map, a swap limit: agentd gives no swap
// beyond the memory limit) is an error wrapping ErrInvalidArgument, never
// silently dropped. The OOM score adjustment is not a cgroup limit: it stays
// as the container was created (containerd does not change it either). It is
// pure.
func linuxResources(r *runtimeapi.LinuxContainerResources) (*protocol.Resources, error) {
	upd := &protocol.Resources{}
	if r == nil {
		return upd, nil
	}
	var errs []string
	for _, v := range []struct {
		name string
		v    int64
	}{{"cpu_period", r.CpuPeriod}, {"cpu_quota", r.CpuQuota}, {"cpu_shares", r.CpuShares}, {"memory_limit_in_bytes", r.MemoryLimitInBytes}} {
		if v.v < 0 {
			errs = append(errs, fmt.Sprintf("%s %d is negative", v.name, v.v))
		}
	}
	for _, h := range r.HugepageLimits {
		if h.GetLimit() != 0 {
			errs = append(errs, fmt.Sprintf("hugepage limit %s: agentd sets no hugepage limits", h.GetPageSize()))
		}
	}
	if len(r.Unified) > 0 {
		errs = append(errs, "unified (cgroup v2) resources are not supported")
	}
	if r.MemorySwapLimitInBytes != 0 {
		errs = append(errs, "memory_swap_limit_in_bytes is not supported: containers get no swap beyond their memory limit")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidArgument, strings.Join(errs, "; "))
	}
	if v := r.MemoryLimitInBytes; v > 0 {
		upd.MemoryLimit = &v
	}
	if r.CpuShares > 0 {
		v := uint64(r.CpuShares)
		upd.CPUShares = &v
	}
	if v := r.CpuQuota; v > 0 {
		upd.CPUQuota = &v
	}
	if r.CpuPeriod > 0 {
		v := uint64(r.CpuPeriod)
		upd.CPUPeriod = &v
	}
	if v := r.CpusetCpus; v != "" {
		upd.CpusetCpus = &v
	}
	if v := r.CpusetMems; v != "" {
		upd.CpusetMems = &v
	}
	if err := upd.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return upd, nil
}
