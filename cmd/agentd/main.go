// Command agentd is the node agent: it runs the Pods of a manifest directory; see
// package daemon.
package main

import (
	"os"

	"github.com/agentd-project/agentd/agent/daemon"
)

func main() {
	os.Exit(daemon.Main(os.Args[1:], os.Stderr))
}
