package runtime

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// nextEvent waits for the first event of id that satisfies cond.
func nextEvent(t *testing.T, events <-chan Event, id, what string, cond func(Event) bool) Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the watch ended while waiting for %s", what)
			}
			if ev.ID == id && cond(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestRootWatchReportsJournalsAndDeadMonitors(t *testing.T) {
	h := newHarness(t)
	h.rt.cfg.RelistInterval = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := h.rt.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pod := h.pod(podYAML("watched", "Always", "echo up; sleep 3600"))
	cfg, st := h.mustStart(pod, 0)
	nextEvent(t, events, cfg.ID, "the journal of the running container", func(ev Event) bool {
		return ev.Type == JournalChanged && ev.Journal.State == protocol.StateRunning
	})

	// kill -9 of the monitor writes nothing: the relist finds it.
	if err := unix.Kill(st.MonitorPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	died := nextEvent(t, events, cfg.ID, "the monitor reported dead", func(ev Event) bool { return ev.Type == MonitorDied })
	if died.Journal == nil || died.Journal.MonitorPid != st.MonitorPid {
		t.Fatalf("MonitorDied carries journal %+v, want the dead monitor's", died.Journal)
	}
	if _, err := h.rt.Cleanup(context.Background(), cfg.ID); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, events, cfg.ID, "the lost exit recorded", func(ev Event) bool {
		return ev.Type == JournalChanged && ev.Journal.State == protocol.StateExited
	})
	if e := ev.Journal.LastExit(); e == nil || e.Reason != protocol.ReasonMonitorLost {
		t.Fatalf("exit after clean-up: %+v", e)
	}
	cancel()
	for range events { // the channel closes once the watch ends
	}
}
