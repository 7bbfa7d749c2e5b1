package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/crilog"
)

// Start creates the directory a container logs to beneath the log root, and
// refuses to follow what a pod may have planted there.
func TestMakeLogDir(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "planted")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "afile"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		log  protocol.LogConfig
		made string // the directory made beneath root
		err  error
	}{
		{name: "kubelet's layout", log: protocol.LogConfig{Root: root, Dir: filepath.Join(root, "ns_p_u", "c")}, made: "ns_p_u/c"},
		{name: "a CRI client's file", log: protocol.LogConfig{Root: root, Dir: filepath.Join(root, "x"), File: "sandbox/c/0.log"}, made: "sandbox/c"},
		{name: "a CRI client's file in the root", log: protocol.LogConfig{Root: root, File: "c_0.log"}, made: "."},
		{name: "Dir outside the root", log: protocol.LogConfig{Root: root, Dir: outside}, err: crilog.ErrNotBeneath},
		{name: "absolute file", log: protocol.LogConfig{Root: root, File: filepath.Join(outside, "f.log")}, err: protocol.ErrBadLogFile},
		{name: "file with ..", log: protocol.LogConfig{Root: root, File: "../f.log"}, err: protocol.ErrBadLogFile},
		{name: "file through a symlink", log: protocol.LogConfig{Root: root, File: "planted/c/0.log"}, err: unix.ENOTDIR}, // O_NOFOLLOW|O_DIRECTORY,
		{name: "Dir through a symlink", log: protocol.LogConfig{Root: root, Dir: filepath.Join(root, "planted", "c")}, err: unix.ENOTDIR},
		{name: "file under a file", log: protocol.LogConfig{Root: root, File: "afile/0.log"}, err: unix.ENOTDIR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := makeLogDir(&protocol.ContainerConfig{Log: tc.log})
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("makeLogDir = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("makeLogDir: %v", err)
			}
			if fi, err := os.Lstat(filepath.Join(root, tc.made)); err != nil || !fi.IsDir() {
				t.Errorf("%s not made: %v", tc.made, err)
			}
		})
	}
	if ents, err := os.ReadDir(outside); err != nil || len(ents) != 0 {
		t.Errorf("made beneath a planted symlink: %v %v", ents, err)
	}
}
