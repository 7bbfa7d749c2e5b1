package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// A container whose monitor state is gone (a removal cut short by a crash, a
// run-dir emptied by a reboot) but whose runs are left under root is found by
// ContainersWithState, and Remove deletes what it left there; a container with a
// monitor state directory is found once.
func TestContainersWithStateAndRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	r := &Runtime{cfg: Config{Settings: Settings{Root: root, RunDir: run}}, log: logr.Discard()}
	leftover, both := "u1_app", "u2_app"
	for _, d := range []string{
		filepath.Join(ContainerRunsDir(root, leftover), "abc", "upper"),
		filepath.Join(ContainerRunsDir(root, both), "def", "upper"),
		protocol.StateDir(run, both),
	} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Not a directory: not a container.
	if err := os.WriteFile(filepath.Join(root, containersDir, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := r.ContainersWithState()
	slices.Sort(got)
	if want := []string{leftover, both}; !slices.Equal(got, want) {
		t.Errorf("ContainersWithState = %v, want %v", got, want)
	}
	ids, _ := r.IDs()
	if !slices.Equal(ids, []string{both}) {
		t.Errorf("IDs = %v, want only %s (the monitor's state)", ids, both)
	}
	for _, id := range []string{leftover, both} {
		if err := r.Remove(id); err != nil {
			t.Fatalf("Remove(%s): %v", id, err)
		}
		for _, d := range []string{filepath.Join(root, containersDir, id), protocol.StateDir(run, id)} {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("Remove(%s) left %s: %v", id, d, err)
			}
		}
	}
	if err := r.Remove("../x"); err == nil {
		t.Error("Remove of an unsafe id succeeded")
	}
}
