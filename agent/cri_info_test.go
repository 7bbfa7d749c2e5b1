package agent

import (
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	criserver "github.com/agentd-project/agentd/cri/server"
)

func TestCRIContainerInfo(t *testing.T) {
	started := time.Unix(1700000000, 0)
	exited := &protocol.Exit{ExitCode: 1, FinishedAt: started.Add(time.Second)}
	for _, tc := range []struct {
		name string
		j    *protocol.Journal
		want int
	}{
		{"no journal (CREATED)", nil, 0},
		{"being created", &protocol.Journal{State: protocol.StateCreating}, 0},
		{"running", &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{{Pid: 41, Exit: exited}, {Pid: 42, StartedAt: started}}}, 42},
		{"exited", &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{{Pid: 42, Exit: exited}}}, 0},
		{"backing off", &protocol.Journal{State: protocol.StateBackOff, Runs: []protocol.Run{{Pid: 42, Exit: exited}}}, 0},
	} {
		got := criContainerInfo("sb", tc.j)
		if want := (criserver.ContainerInfo{SandboxID: "sb", Pid: tc.want}); got != want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, want)
		}
	}
}
