package monitor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// TestOrphanRuns: a dead monitor's clean-up finds the journal's current run and
// every run directory, recorded or not, once each.
func TestOrphanRuns(t *testing.T) {
	dir := t.TempDir()
	recorded, unrecorded := newContainerID(), newContainerID()
	for _, id := range []string{recorded, unrecorded} {
		if err := os.MkdirAll(filepath.Join(runDir(dir, id), "rootfs"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	j := &protocol.Journal{Runs: []protocol.Run{{ContainerID: recorded}}}
	got := orphanRuns(dir, j)
	want := map[string]bool{recorded: true, unrecorded: true}
	if len(got) != 2 || !want[got[0]] || !want[got[1]] || got[0] == got[1] {
		t.Errorf("orphanRuns = %v, want %s and %s", got, recorded, unrecorded)
	}
	if got := orphanRuns(t.TempDir(), &protocol.Journal{}); len(got) != 0 {
		t.Errorf("orphanRuns of an empty state dir = %v", got)
	}
	if !isContainerID(recorded) || isContainerID("../x") || isContainerID(recorded[:63]+"G") {
		t.Error("isContainerID")
	}
}
