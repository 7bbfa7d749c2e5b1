// Command agent-monitor sets up and restarts one container for agentd and owns
// libcontainer's init hook; see package monitor. Between those moments the process
// runs as agent-monitor-lean.
package main

import (
	"fmt"
	"os"

	_ "github.com/opencontainers/cgroups/devices" // device rules for containers
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/agentd-project/agentd/agent/monitor"
	_ "github.com/agentd-project/agentd/agent/monitor/detach" // `start` forks before the Go runtime exists
	"github.com/agentd-project/agentd/agent/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// The container's init: runs inside the new namespaces, never returns.
		libcontainer.Init()
	}
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		fmt.Println("agent-monitor", version.Version)
		return
	}
	os.Exit(monitor.Main(os.Args[1:]))
}
