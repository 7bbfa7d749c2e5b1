package agent

import (
	"fmt"

	"github.com/agentd-project/agentd/cri/record"
	criserver "github.com/agentd-project/agentd/cri/server"
)

// The lookups below are what the CRI's parts beside the sandbox and container
// lifecycle (streaming, ExecSync, image pulls) need to know of CRI objects,
// from the lifecycle's records (agent/cri_sandbox.go, agent/cri_container.go).

// criContainerRef names a CRI container's parts in the runtime.
type criContainerRef struct {
	// MonitorID is the container's monitor (runtime.MonitorID of its sandbox
	// and internal name): what rt.Exec, rt.Inspect and rt.Journal take.
	MonitorID string
	// SandboxID is the CRI sandbox (= the internal pod UID) it belongs to.
	SandboxID string
}

// criContainer finds CRI container id (the full ID). An unknown ID is an
// error wrapping criserver.ErrNotFound.
func (a *Agent) criContainer(id string) (criContainerRef, error) {
	_, c := a.criContainerRec(id)
	if c == nil {
		return criContainerRef{}, fmt.Errorf("container %q: %w", id, criserver.ErrNotFound)
	}
	return criContainerRef{MonitorID: c.Config.ID, SandboxID: c.SandboxID}, nil
}

// criSandboxNetNS is the network namespace CRI sandbox id's containers use:
// its pinned namespace's path, or "" for a host-network sandbox. An unknown
// ID is an error wrapping criserver.ErrNotFound; a sandbox that is not READY
// one wrapping criserver.ErrFailedPrecondition.
func (a *Agent) criSandboxNetNS(id string) (string, error) {
	pr := a.criSandbox(id)
	if pr == nil {
		return "", fmt.Errorf("sandbox %q: %w", id, criserver.ErrNotFound)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if pr.cri.rec == nil || pr.sandbox == nil {
		return "", fmt.Errorf("sandbox %q: %w", id, criserver.ErrNotFound)
	}
	if pr.cri.rec.State != record.StateReady {
		return "", fmt.Errorf("%w: sandbox %s is not ready", criserver.ErrFailedPrecondition, id)
	}
	return pr.sandbox.NetNS, nil // "" for a host-network sandbox
}
