package runtime

import (
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func TestJournalDiffers(t *testing.T) {
	running := &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{{ContainerID: "a"}}}
	exited := &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{{ContainerID: "a", Exit: &protocol.Exit{}}}}
	restarted := &protocol.Journal{State: protocol.StateRunning, RestartCount: 1, Runs: []protocol.Run{{ContainerID: "a", Exit: &protocol.Exit{}}, {ContainerID: "b"}}}
	for _, tc := range []struct {
		name string
		a, b *protocol.Journal
		want bool
	}{
		{"none reported yet", nil, running, true},
		{"the same", running, running, false},
		{"exited", running, exited, true},
		{"restarted", exited, restarted, true},
		{"gone", running, nil, true},
		{"a copy", exited, &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{{ContainerID: "a", Exit: &protocol.Exit{}}}}, false},
	} {
		if got := JournalDiffers(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
