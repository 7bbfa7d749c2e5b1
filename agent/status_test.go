package agent

import (
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// A probe result belongs to one run: a restart starts without results, so the
// spec decides (state.Readiness), as kubelet's results keyed by container ID.
func TestStatusManagerProbeResultsPerRun(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := newStatusManager()
	first := &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{{ContainerID: "c1", StartedAt: t0}}}
	s.SetJournal("m", first)
	s.SetContainerStartup("m", true)
	s.SetContainerReadiness("m", true)

	// The same run, further along (a newer journal of it): results kept.
	s.SetJournal("m", &protocol.Journal{State: protocol.StateRunning, DroppedLog: 1, Runs: first.Runs})
	if ci := s.Info("m"); !ci.StartupPassed || !ci.ReadinessPassed {
		t.Fatalf("results of the same run lost: %+v", ci)
	}

	exited := append([]protocol.Run(nil), first.Runs...)
	exited[0].Exit = &protocol.Exit{ExitCode: 1, FinishedAt: t0.Add(time.Second)}
	s.SetJournal("m", &protocol.Journal{State: protocol.StateBackOff, Runs: exited})
	if ci := s.Info("m"); !ci.StartupPassed || !ci.ReadinessPassed {
		t.Fatalf("an exit is not a new run: %+v", ci)
	}

	s.SetJournal("m", &protocol.Journal{State: protocol.StateRunning, RestartCount: 1,
		Runs: append(exited, protocol.Run{ContainerID: "c2", RestartCount: 1, StartedAt: t0.Add(2 * time.Second)})})
	if ci := s.Info("m"); ci.StartupPassed || ci.ReadinessPassed {
		t.Errorf("the new run has the old run's results: %+v", ci)
	}

	s.SetContainerReadiness("m", true)
	s.ResetProbeResults("m")
	if ci := s.Info("m"); ci.ReadinessPassed {
		t.Errorf("ResetProbeResults kept a result: %+v", ci)
	}
}
