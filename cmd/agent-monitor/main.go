// Command agent-monitor is the per-container monitor that agentd starts; it is the
// container's parent and owns libcontainer's init hook.
package main

import (
	"fmt"
	"os"

	_ "github.com/opencontainers/cgroups/devices" // device rules for containers
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

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
	fmt.Fprintln(os.Stderr, "agent-monitor: started only by agentd, which hands it a container's state directory")
	os.Exit(2)
}
