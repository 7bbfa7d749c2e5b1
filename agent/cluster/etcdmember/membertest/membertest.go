// Package membertest lets a package's tests run their own test binary as agent-etcd, so that they start real
// member processes without `make build`: call Main from TestMain, and start members with store.WithBinary(Binary()).
package membertest

import (
	"os"
	"testing"

	"github.com/agentd-project/agentd/agent/cluster/etcdmember"
)

// envRun makes the test binary agent-etcd.
const envRun = "AGENTD_TEST_RUN_AS_AGENT_ETCD"

// Main runs the tests, or, in a process that Binary started, agent-etcd.
func Main(m *testing.M) {
	if os.Getenv(envRun) == "1" {
		os.Exit(etcdmember.Main(nil, "test"))
	}
	os.Exit(m.Run())
}

// Binary is the executable and the environment to run agent-etcd with (store.WithBinary).
func Binary() (string, string) {
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return self, envRun + "=1"
}
