package monitor

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testutil"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// A subPath swapped for a symlink to "/" or to a host directory, or with a
// symlinked component, is resolved inside the volume and pinned; unmountRun then
// removes the run directory without touching the volume.
func TestRootPinSubPath(t *testing.T) {
	testutil.RequiresRoot(t)
	dir := t.TempDir()
	vol, run, host := filepath.Join(dir, "vol"), filepath.Join(dir, "run"), filepath.Join(dir, "host")
	for _, d := range []string{filepath.Join(vol, "real", "deeper"), host} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"to-root": "/", "to-host": host, "via": "real", "up": "../../.."} {
		if err := os.Symlink(target, filepath.Join(vol, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(vol, "file"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := []protocol.Mount{
		{Source: vol, Destination: "/a", SubPath: "to-root"},
		{Source: vol, Destination: "/b", SubPath: "via/deeper"},
		{Source: vol, Destination: "/c", SubPath: "up"},
		{Source: vol, Destination: "/d", SubPath: "new/dir"},
		{Source: vol, Destination: "/e", SubPath: "file"},
		{Source: vol, Destination: "/f"},
	}
	pinned, err := bindSubPaths(mounts, run)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unmountRun(run); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(filepath.Join(vol, "real", "deeper")); err != nil {
			t.Errorf("unmountRun removed volume data: %v", err)
		}
		if _, err := os.Stat(run); !os.IsNotExist(err) {
			t.Errorf("run directory left: %v", err)
		}
	}()
	same := func(a, b string) bool {
		var x, y unix.Stat_t
		return unix.Stat(a, &x) == nil && unix.Stat(b, &y) == nil && x.Dev == y.Dev && x.Ino == y.Ino
	}
	want := map[string]string{
		"/a": vol, "/b": filepath.Join(vol, "real", "deeper"), "/c": vol,
		"/d": filepath.Join(vol, "new", "dir"), "/e": filepath.Join(vol, "file"), "/f": vol,
	}
	for _, m := range pinned {
		if m.SubPath != "" {
			t.Errorf("%s: subPath left unresolved", m.Destination)
		}
		if !same(m.Source, want[m.Destination]) {
			t.Errorf("%s: pinned %s is not %s", m.Destination, m.Source, want[m.Destination])
		}
		if same(m.Source, "/") || same(m.Source, host) {
			t.Errorf("%s: pinned the host's %s", m.Destination, m.Source)
		}
	}
	// A symlink to a host directory that does not exist inside the volume fails.
	if _, err := bindSubPaths([]protocol.Mount{{Source: vol, Destination: "/x", SubPath: "to-host"}}, filepath.Join(dir, "run2")); err == nil {
		t.Errorf("a subPath through a symlink to a missing path was pinned")
	}
	_ = unmountRun(filepath.Join(dir, "run2"))
}
