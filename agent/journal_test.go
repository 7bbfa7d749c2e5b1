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

func TestJournalBehind(t *testing.T) {
	exit := &protocol.Exit{ExitCode: 1}
	j := func(pid, restarts int, state string, exited bool) *protocol.Journal {
		r := protocol.Run{}
		if exited {
			r.Exit = exit
		}
		return &protocol.Journal{MonitorPid: pid, MonitorStart: 7, RestartCount: restarts, State: state, Runs: []protocol.Run{r}}
	}
	for _, tc := range []struct {
		name   string
		cur, j *protocol.Journal
		behind bool
	}{
		{"nothing recorded", nil, j(1, 0, protocol.StateRunning, false), false},
		{"running after exited", j(1, 0, protocol.StateExited, true), j(1, 0, protocol.StateRunning, false), true},
		{"creating after running", j(1, 0, protocol.StateRunning, false), j(1, 0, protocol.StateCreating, false), true},
		{"exited after running", j(1, 0, protocol.StateRunning, false), j(1, 0, protocol.StateExited, true), false},
		{"back-off after the restart", j(1, 1, protocol.StateRunning, false), j(1, 0, protocol.StateBackOff, true), true},
		{"restart after back-off", j(1, 0, protocol.StateBackOff, true), j(1, 1, protocol.StateRunning, false), false},
		{"the same", j(1, 0, protocol.StateRunning, false), j(1, 0, protocol.StateRunning, false), false},
		{"another monitor", j(1, 3, protocol.StateExited, true), j(2, 0, protocol.StateRunning, false), false},
	} {
		if got := journalBehind(tc.cur, tc.j); got != tc.behind {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.behind)
		}
	}
}
