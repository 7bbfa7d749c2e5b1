// Command agent-etcd runs cluster mode's etcd member for agentd, which starts it, configures it over standard input
// and stops it (see package etcdproc). It sits beside agentd; etcd's server lives here so that agentd does not link
// (and initialise) it on every start.
package main

import (
	"os"

	"github.com/agentd-project/agentd/agent/cluster/etcdmember"
	"github.com/agentd-project/agentd/agent/version"
)

func main() {
	os.Exit(etcdmember.Main(os.Args[1:], version.Version))
}
