package server_test

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/server"
)

// lifecycleStub is a SandboxBackend and ContainerBackend that knows no
// sandbox and no container.
type lifecycleStub struct{}

var (
	_ server.SandboxBackend   = lifecycleStub{}
	_ server.ContainerBackend = lifecycleStub{}
)

func notFound(what, id string) error { return fmt.Errorf("%s %q: %w", what, id, server.ErrNotFound) }

func (lifecycleStub) RunPodSandbox(context.Context, *runtimeapi.PodSandboxConfig, string) (string, error) {
	return "", fmt.Errorf("stub: %w", server.ErrUnimplemented)
}
func (lifecycleStub) StopPodSandbox(context.Context, string) error   { return nil }
func (lifecycleStub) RemovePodSandbox(context.Context, string) error { return nil }
func (lifecycleStub) PodSandboxStatus(_ context.Context, id string) (*runtimeapi.PodSandboxStatus, error) {
	return nil, notFound("sandbox", id)
}
func (lifecycleStub) PodSandboxes(context.Context) ([]*runtimeapi.PodSandbox, error) { return nil, nil }
func (lifecycleStub) CreateContainer(_ context.Context, sb string, _ *runtimeapi.ContainerConfig) (string, error) {
	return "", notFound("sandbox", sb)
}
func (lifecycleStub) StartContainer(_ context.Context, id string) error {
	return notFound("container", id)
}
func (lifecycleStub) StopContainer(context.Context, string, int64) error { return nil }
func (lifecycleStub) RemoveContainer(context.Context, string) error      { return nil }
func (lifecycleStub) ContainerStatus(_ context.Context, id string) (*runtimeapi.ContainerStatus, error) {
	return nil, notFound("container", id)
}
func (lifecycleStub) Containers(context.Context) ([]*runtimeapi.Container, error) { return nil, nil }
func (lifecycleStub) ReopenContainerLog(_ context.Context, id string) error {
	return notFound("container", id)
}
func (lifecycleStub) UpdateContainerResources(_ context.Context, id string, _ *protocol.Resources) error {
	return notFound("container", id)
}
func (lifecycleStub) ContainerStats(_ context.Context, id string) (*runtimeapi.ContainerStats, error) {
	return nil, notFound("container", id)
}
func (lifecycleStub) PodSandboxStats(_ context.Context, id string) (*runtimeapi.PodSandboxStats, error) {
	return nil, notFound("sandbox", id)
}
