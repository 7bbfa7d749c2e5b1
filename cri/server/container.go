package server

import (
	"context"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
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
