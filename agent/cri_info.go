package agent

import (
	"context"
	"fmt"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	criserver "github.com/agentd-project/agentd/cri/server"
)

// ContainerInfo implements criserver.Backend: the container's sandbox, and
// the pid of its init process while its monitor's journal says it runs.
func (b criBackend) ContainerInfo(_ context.Context, id string) (criserver.ContainerInfo, error) {
	_, c := b.a.criContainerRec(id)
	if c == nil {
		return criserver.ContainerInfo{}, fmt.Errorf("container %q: %w", id, criserver.ErrNotFound)
	}
	return criContainerInfo(c.SandboxID, b.a.criJournal(c.Config.ID)), nil
}

// criContainerInfo is a container's verbose info from its journal; it is pure.
func criContainerInfo(sandboxID string, j *protocol.Journal) criserver.ContainerInfo {
	info := criserver.ContainerInfo{SandboxID: sandboxID}
	if j == nil || j.State != protocol.StateRunning {
		return info
	}
	if run := j.Current(); run != nil && run.Exit == nil {
		info.Pid = run.Pid
	}
	return info
}
