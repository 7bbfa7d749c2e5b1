package agent

import (
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func TestJournalSeenNext(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	run := func(n int, exit *protocol.Exit) protocol.Run {
		return protocol.Run{ContainerID: "c", RestartCount: n, StartedAt: t0.Add(time.Duration(n) * time.Minute), Exit: exit}
	}
	failed := &protocol.Exit{ExitCode: 1, Reason: protocol.ReasonError}
	for _, tc := range []struct {
		name          string
		seen          *protocol.Journal
		j             *protocol.Journal
		wantRestarted bool
		wantExit      bool
	}{
		{"first run", nil, &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{run(0, nil)}}, false, false},
		{"exit, backing off", &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{run(0, nil)}},
			&protocol.Journal{State: protocol.StateBackOff, Runs: []protocol.Run{run(0, failed)}}, false, true},
		{"the same exit again", &protocol.Journal{State: protocol.StateBackOff, Runs: []protocol.Run{run(0, failed)}},
			&protocol.Journal{State: protocol.StateBackOff, Runs: []protocol.Run{run(0, failed)}}, false, false},
		{"restarted", &protocol.Journal{State: protocol.StateBackOff, Runs: []protocol.Run{run(0, failed)}},
			&protocol.Journal{State: protocol.StateRunning, RestartCount: 1, Runs: []protocol.Run{run(0, failed), run(1, nil)}}, true, false},
		{"restarted and exited since (seen late)", &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{run(0, nil)}},
			&protocol.Journal{State: protocol.StateExited, RestartCount: 1, Runs: []protocol.Run{run(0, failed), run(1, failed)}}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, restarted, exit := seenOf(tc.seen).next(tc.j)
			if restarted != tc.wantRestarted || (exit != nil) != tc.wantExit {
				t.Fatalf("restarted %v exit %v; want %v %v", restarted, exit, tc.wantRestarted, tc.wantExit)
			}
		})
	}
}
