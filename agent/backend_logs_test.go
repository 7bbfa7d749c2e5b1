package agent

import (
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// `logs --previous` prints the run the status's lastState.terminated describes.
func TestPreviousRun(t *testing.T) {
	exit := &protocol.Exit{ExitCode: 3, Reason: protocol.ReasonError}
	run := func(log string, e *protocol.Exit) protocol.Run { return protocol.Run{LogPath: log, Exit: e} }
	for _, tc := range []struct {
		name string
		j    protocol.Journal
		want string
	}{
		{"first run, running", protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{run("0.log", nil)}}, ""},
		{"first run, backing off: it", protocol.Journal{State: protocol.StateBackOff, Runs: []protocol.Run{run("0.log", exit)}}, "0.log"},
		{"second run, running: the first", protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{run("0.log", exit), run("1.log", nil)}}, "0.log"},
		{"second run, backing off: the second", protocol.Journal{State: protocol.StateBackOff, Runs: []protocol.Run{run("0.log", exit), run("1.log", exit)}}, "1.log"},
		{"exited for good: the one before", protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{run("0.log", exit), run("1.log", exit)}}, "0.log"},
		{"no runs", protocol.Journal{State: protocol.StateBackOff}, ""},
	} {
		got := ""
		if r := previousRun(&tc.j); r != nil {
			got = r.LogPath
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
