package reconcile

import (
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func TestRestorePod(t *testing.T) {
	for _, tc := range []struct {
		rec       RecordState
		live      bool
		wantAdopt bool
	}{
		{RecordComplete, true, true},
		{RecordComplete, false, false},
		{RecordTerminating, true, false},
		{RecordUnfinished, true, false},
		{RecordBroken, true, false},
		{NoRecord, true, false},
	} {
		adopt, why := RestorePod(tc.rec, tc.live)
		if adopt != tc.wantAdopt || !adopt && why == "" {
			t.Errorf("RestorePod(%v, live %v) = %v %q; want %v with a reason when removed", tc.rec, tc.live, adopt, why, tc.wantAdopt)
		}
	}
}

func TestRestoreContainer(t *testing.T) {
	running := &protocol.Journal{State: protocol.StateRunning}
	creating := &protocol.Journal{State: protocol.StateCreating}
	for _, tc := range []struct {
		name string
		m    MonitorFound
		j    *protocol.Journal
		want ContainerRestore
	}{
		{"alive", MonitorRuns, running, Adopt},
		{"finished", MonitorRuns, &protocol.Journal{State: protocol.StateExited}, Adopt},
		{"alive, first run not begun", MonitorRuns, creating, AdoptStarting},
		{"starting, no journal", MonitorStarting, nil, AdoptStarting},
		{"dead", MonitorDead, running, CleanUpLost},
		{"broken", MonitorDead, nil, CleanUpLost},
		{"other protocol", MonitorUnmanaged, running, LeaveUnmanaged},
	} {
		if got := RestoreContainer(tc.m, tc.j); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}
