package supervisor

import (
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/crilog"
)

// LogFile splits a run's log path into the container's log root
// (protocol.LogRoot) and the file's path beneath it, which crilog opens without
// following symlinks. A config whose Log.File is not a clean relative path
// beneath its root (protocol.ErrBadLogFile) has no log file.
func LogFile(cfg *protocol.ContainerConfig, logPath string) (root, name string, err error) {
	if err := cfg.Log.CheckFile(); err != nil {
		return "", "", err
	}
	root = protocol.LogRoot(cfg)
	name, err = crilog.Beneath(root, logPath)
	return root, name, err
}
