package supervisor

import (
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/crilog"
)

// LogFile splits a run's log path into the container's log root
// (protocol.LogRoot) and the file's path beneath it, which crilog opens without
// following symlinks.
func LogFile(cfg *protocol.ContainerConfig, logPath string) (root, name string, err error) {
	root = protocol.LogRoot(cfg)
	name, err = crilog.Beneath(root, logPath)
	return root, name, err
}
