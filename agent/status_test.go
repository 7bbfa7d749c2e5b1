package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/runtime"
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

func TestFailedEventsNeverRepeatTheirReason(t *testing.T) {
	for _, tc := range []struct {
		reason string
		err    error
		want   []eventText
	}{
		{reasonErrImageNeverPull, &runtime.ImageNeverPullError{Ref: "busybox"}, []eventText{
			{"ErrImageNeverPull", "image \"busybox\" is not present on this node and agentd does not pull images: import it with `agentctl image import FILE`"},
			{"Failed", "Error: ErrImageNeverPull"},
		}},
		{reasonErrImagePull, errors.New("store: disk error"), []eventText{
			{"Failed", `Failed to pull image "busybox": store: disk error`},
			{"Failed", "Error: ErrImagePull"},
		}},
		{"CreateContainerConfigError", errors.New(`spec.containers[0].env[0]: configMapKeyRef is not supported`), []eventText{
			{"Failed", `Error: spec.containers[0].env[0]: configMapKeyRef is not supported`},
		}},
	} {
		got := failedEvents(tc.reason, "busybox", tc.err)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.reason, got, tc.want)
		}
		for _, ev := range got {
			if strings.Count(ev.message, tc.reason) > 1 || strings.Contains(ev.message, ev.reason+": "+ev.reason) {
				t.Errorf("%s: %q repeats its reason", tc.reason, ev.message)
			}
		}
	}
}
