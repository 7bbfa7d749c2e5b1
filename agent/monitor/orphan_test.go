package monitor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// TestOrphanRuns: a dead monitor's clean-up finds the journal's current run and
// every run directory, recorded or not, once each: in the config's RunsDir, or
// in the state directory for a config of an older agentd (no RunsDir).
func TestOrphanRuns(t *testing.T) {
	for _, tc := range []struct {
		name    string
		runsDir bool
	}{{"runsDir under root", true}, {"config of an older agentd", false}} {
		t.Run(tc.name, func(t *testing.T) {
			stateDir := t.TempDir()
			cfg := &protocol.ContainerConfig{ID: "u_c"}
			if tc.runsDir {
				cfg.Rootfs.RunsDir = filepath.Join(t.TempDir(), "containers", "u_c", "runs")
			}
			recorded, unrecorded := newContainerID(), newContainerID()
			for _, id := range []string{recorded, unrecorded} {
				dir, err := runDir(cfg, stateDir, id)
				if err != nil {
					t.Fatal(err)
				}
				if want := cfg.Rootfs.RunsDir; want != "" && filepath.Dir(dir) != want {
					t.Fatalf("run dir %s is not in RunsDir %s", dir, want)
				}
				if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			j := &protocol.Journal{Runs: []protocol.Run{{ContainerID: recorded}}}
			got, err := orphanRuns(cfg, stateDir, j)
			want := map[string]bool{recorded: true, unrecorded: true}
			if err != nil || len(got) != 2 || !want[got[0]] || !want[got[1]] || got[0] == got[1] {
				t.Errorf("orphanRuns = %v, %v; want %s and %s", got, err, recorded, unrecorded)
			}
			if got, err := orphanRuns(&protocol.ContainerConfig{}, t.TempDir(), &protocol.Journal{}); err != nil || len(got) != 0 {
				t.Errorf("orphanRuns of an empty state dir = %v, %v", got, err)
			}
		})
	}
	// A RunsDir that is not absolute and clean is refused, never listed or removed.
	bad := &protocol.ContainerConfig{ID: "u_c", Rootfs: protocol.Rootfs{RunsDir: "/var/lib/agent/../../etc"}}
	if got, err := orphanRuns(bad, t.TempDir(), &protocol.Journal{}); !errors.Is(err, protocol.ErrBadRunsDir) {
		t.Errorf("orphanRuns with RunsDir %q = %v, %v; want ErrBadRunsDir", bad.Rootfs.RunsDir, got, err)
	}
	if err := destroyRun(bad, t.TempDir(), newContainerID()); !errors.Is(err, protocol.ErrBadRunsDir) {
		t.Errorf("destroyRun with RunsDir %q = %v; want ErrBadRunsDir", bad.Rootfs.RunsDir, err)
	}
	if _, err := startContainer(bad, t.TempDir(), nil); !errors.Is(err, protocol.ErrBadRunsDir) {
		t.Errorf("startContainer with RunsDir %q = %v; want ErrBadRunsDir", bad.Rootfs.RunsDir, err)
	}
	if !isContainerID(newContainerID()) || isContainerID("../x") || isContainerID(strings.Repeat("a", 63)+"G") {
		t.Error("isContainerID")
	}
}
