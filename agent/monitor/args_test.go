package monitor

import (
	"reflect"
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// The command lines agentd and the lean monitor build (package protocol) are the
// ones this monitor understands: after an upgrade an older lean monitor execs a
// newer agent-monitor with them.
func TestParseProtocolArgs(t *testing.T) {
	execArgs, err := protocol.ExecArgs("/run/agent/monitors/c1", "abc", &protocol.ExecRequest{Args: []string{"ls", "-l"}, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	mem := int64(64 << 20)
	updateArgs, err := protocol.UpdateArgs("/run/agent/monitors/c1", "abc", &protocol.Resources{MemoryLimit: &mem})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want invocation
	}{
		{"start", protocol.StartArgs("/run/agent/monitors/c1"), invocation{cmd: protocol.CmdStart, stateDir: "/run/agent/monitors/c1", lock: protocol.LockFd}},
		{"next", protocol.NextArgs("/run/agent/monitors/c1"), invocation{cmd: protocol.CmdNext, stateDir: "/run/agent/monitors/c1", lock: -1}},
		{"exec", execArgs, invocation{cmd: protocol.CmdExec, stateDir: "/run/agent/monitors/c1", containerID: "abc",
			execSpec: `{"args":["ls","-l"],"tty":true}`, lock: -1}},
		{"update", updateArgs, invocation{cmd: protocol.CmdUpdate, stateDir: "/run/agent/monitors/c1", containerID: "abc",
			execSpec: `{"memoryLimit":67108864}`, lock: -1}},
		{"kill", protocol.KillArgs("/run/agent/monitors/c1"), invocation{cmd: protocol.CmdKill, stateDir: "/run/agent/monitors/c1", lock: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseArgs(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("parseArgs(%q) = %+v, want %+v", tc.args, *got, tc.want)
			}
		})
	}
	if _, err := parseArgs([]string{protocol.CmdNext}); err == nil {
		t.Error("parseArgs without --state-dir: no error")
	}
}
