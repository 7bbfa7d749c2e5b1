package server

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStats implements runtimeapi.RuntimeServiceServer.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	st, err := s.b.ContainerStats(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats implements runtimeapi.RuntimeServiceServer: the stats of
// the containers the filter selects (as ListContainers), skipping those that
// went meanwhile.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	all, err := s.b.Containers(ctx)
	if err != nil {
		return nil, err
	}
	var f *runtimeapi.ContainerFilter
	if sf := req.GetFilter(); sf != nil {
		f = &runtimeapi.ContainerFilter{Id: sf.Id, PodSandboxId: sf.PodSandboxId, LabelSelector: sf.LabelSelector}
	}
	out := []*runtimeapi.ContainerStats{}
	for _, c := range filterContainers(all, f) {
		st, err := s.b.ContainerStats(ctx, c.Id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

// PodSandboxStats implements runtimeapi.RuntimeServiceServer.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	st, err := s.b.PodSandboxStats(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats implements runtimeapi.RuntimeServiceServer.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	all, err := s.b.PodSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	var f *runtimeapi.PodSandboxFilter
	if sf := req.GetFilter(); sf != nil {
		f = &runtimeapi.PodSandboxFilter{Id: sf.Id, LabelSelector: sf.LabelSelector}
	}
	out := []*runtimeapi.PodSandboxStats{}
	for _, sb := range filterSandboxes(all, f) {
		st, err := s.b.PodSandboxStats(ctx, sb.Id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}
