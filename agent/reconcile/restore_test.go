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

func TestLostRestart(t *testing.T) {
	lost := &protocol.Exit{ExitCode: 137, Reason: protocol.ReasonMonitorLost}
	ran := &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{{Exit: lost}}}
	for _, tc := range []struct {
		policy string
		j      *protocol.Journal
		want   bool
	}{
		{protocol.RestartAlways, ran, true},
		{protocol.RestartOnFailure, ran, true},
		{protocol.RestartNever, ran, false},
		// Never ran: started as if for the first time, whatever the policy.
		{protocol.RestartNever, &protocol.Journal{State: protocol.StateExited}, true},
		{protocol.RestartNever, nil, true},
		{protocol.RestartOnFailure, &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{{Exit: &protocol.Exit{ExitCode: 0, Reason: protocol.ReasonCompleted}}}}, false},
	} {
		if got := LostRestart(tc.policy, tc.j); got != tc.want {
			t.Errorf("LostRestart(%s, %+v) = %v, want %v", tc.policy, tc.j, got, tc.want)
		}
	}
}
