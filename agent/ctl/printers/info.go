package printers

import (
	"bytes"
	"fmt"
	"io"

	"github.com/agentd-project/agentd/agent/api"
)

// PrintInfo prints `agentctl info` in the style of `docker info`: one "Key: value" line
// each, container counts nested under Containers, the live-restore state
// ("Live Restore Enabled: false (disabled: <reason>)" when configured on but off), and a
// Warnings section when there are any.
func PrintInfo(w io.Writer, info *api.Info) error {
	var b bytes.Buffer
	line := func(key string, value any) { fmt.Fprintf(&b, "%s: %v\n", key, value) }

	line("Server Version", info.ServerVersion)
	line("Node Name", info.NodeName)
	line("Storage Driver", info.StorageDriver)
	line("Cgroup Parent", info.CgroupParent)
	line("Cgroup Version", info.CgroupVersion)
	line("Kernel Version", info.KernelVersion)
	line("Root Dir", info.Root)
	line("Run Dir", info.RunDir)
	line("Log Dir", info.LogDir)
	line("Manifest Dir", info.ManifestDir)
	line("Monitor Protocol", info.MonitorProtocol)
	line("Pods", info.Pods)
	line("Containers", info.Containers)
	line(" Running", info.ContainersRunning)
	line(" Exited", info.ContainersExited)
	line("Images", info.Images)
	liveRestore := fmt.Sprint(info.LiveRestoreEnabled)
	if !info.LiveRestoreEnabled && info.LiveRestoreDisabledReason != "" {
		liveRestore += " (disabled: " + info.LiveRestoreDisabledReason + ")"
	}
	line("Live Restore Enabled", liveRestore)
	if info.Cluster.InCluster {
		b.WriteString("Cluster:\n")
		clusterLines(&b, &info.Cluster, " ")
	} else {
		line("Cluster", "none")
	}
	if len(info.Warnings) > 0 {
		b.WriteString("Warnings:\n")
		for _, warning := range info.Warnings {
			fmt.Fprintf(&b, " %s\n", warning)
		}
	}
	_, err := w.Write([]byte(terminalEscaper.Replace(b.String())))
	return err
}
