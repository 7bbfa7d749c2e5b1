// Command agent-monitor-lean is the long-lived, small image of a container's monitor
// process; agent-monitor execs it. See package supervisor.
package main

import (
	"os"
	"runtime"

	"github.com/agentd-project/agentd/agent/monitor/supervisor"
	"github.com/agentd-project/agentd/agent/version"
)

func init() {
	// The exec into agent-monitor happens on the main goroutine; keep it on the
	// process's main thread, so the kernel never shows the process as a zombie
	// (thread group leader exited) while it execs.
	runtime.LockOSThread()
}

func main() {
	supervisor.Version = version.Version
	os.Exit(supervisor.Main())
}
