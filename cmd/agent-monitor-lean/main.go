// Command agent-monitor-lean is the long-lived, small image of a container's monitor
// process; agent-monitor execs it. See package supervisor.
package main

import (
	"os"

	"github.com/agentd-project/agentd/agent/monitor/supervisor"
	"github.com/agentd-project/agentd/agent/version"
)

func main() {
	supervisor.Version = version.Version
	os.Exit(supervisor.Main())
}
