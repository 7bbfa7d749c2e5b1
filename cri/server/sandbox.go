package server

import (
	"context"
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/cri/record"
)

// SandboxBackend is the sandbox lifecycle as the CRI server sees it (part of
// Backend; the same rules: safe for concurrent use, ctx is the RPC's).
// Requests reach it validated (record.ValidateSandboxConfig); IDs it is given
// may be anything a client sent, and an ID that is not record.ValidID is
// unknown.
type SandboxBackend interface {
	// RunPodSandbox creates and starts a sandbox and returns its ID. A name
	// (record.SandboxKey) another sandbox holds is an error wrapping
	// ErrAlreadyExists.
	RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error)
	// StopPodSandbox stops every container of sandbox id and detaches it
	// from the network: NOTREADY. An unknown ID is not an error.
	StopPodSandbox(ctx context.Context, id string) error
	// RemovePodSandbox stops sandbox id if needed and removes it with its
	// containers. An unknown ID is not an error.
	RemovePodSandbox(ctx context.Context, id string) error
	// PodSandboxStatus is sandbox id's status; unknown: an error wrapping
	// ErrNotFound.
	PodSandboxStatus(ctx context.Context, id string) (*runtimeapi.PodSandboxStatus, error)
	// PodSandboxes lists every CRI sandbox.
	PodSandboxes(ctx context.Context) ([]*runtimeapi.PodSandbox, error)
}

// RunPodSandbox implements runtimeapi.RuntimeServiceServer.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	if err := record.ValidateSandboxConfig(req.GetConfig()); err != nil {
		return nil, invalid(err)
	}
	if h := req.GetRuntimeHandler(); h != "" {
		return nil, fmt.Errorf("%w: runtime handler %q: agentd has only the default handler", ErrInvalidArgument, h)
	}
	id, err := s.b.RunPodSandbox(ctx, req.Config, req.RuntimeHandler)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// StopPodSandbox implements runtimeapi.RuntimeServiceServer.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	if err := s.b.StopPodSandbox(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox implements runtimeapi.RuntimeServiceServer.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	if err := s.b.RemovePodSandbox(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// PodSandboxStatus implements runtimeapi.RuntimeServiceServer.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	st, err := s.b.PodSandboxStatus(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if req.GetVerbose() {
		resp.Info = map[string]string{}
	}
	return resp, nil
}

// ListPodSandbox implements runtimeapi.RuntimeServiceServer.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	all, err := s.b.PodSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: filterSandboxes(all, req.GetFilter())}, nil
}

// filterSandboxes keeps the sandboxes f selects: by ID (or a prefix of one, as
// crictl gives them), state and labels.
func filterSandboxes(all []*runtimeapi.PodSandbox, f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	out := []*runtimeapi.PodSandbox{}
	for _, sb := range all {
		if f != nil {
			if f.Id != "" && !strings.HasPrefix(sb.Id, f.Id) {
				continue
			}
			if f.State != nil && f.State.State != sb.State {
				continue
			}
			if !labelsMatch(sb.Labels, f.LabelSelector) {
				continue
			}
		}
		out = append(out, sb)
	}
	return out
}

// labelsMatch says whether labels has every key of selector with its value.
func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// invalid marks a record check's failure as the caller's.
func invalid(err error) error { return fmt.Errorf("%w: %w", ErrInvalidArgument, err) }
