package network

import (
	"encoding/json"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
)

// pluginVersionsFile, in the network's state directory, remembers the CNI
// versions each plugin binary said it supports, with the identity of the binary
// that said it. Asking is an exec of each plugin (three Go programs, tens of ms
// of CPU together), and agentd asks at every start, when a restore competes for
// the same CPUs; the answer changes only with the binary.
const pluginVersionsFile = "plugin-versions.json"

// maxPluginVersionsFile bounds what is read back: the file is a few hundred bytes.
const maxPluginVersionsFile = 64 << 10

// pluginBinary identifies one plugin binary: a replaced, rewritten or touched
// binary has another inode, size, mtime or ctime (a rename or chmod changes ctime).
type pluginBinary struct {
	Path  string `json:"path"`
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtimeNs"`
	Ctime int64  `json:"ctimeNs"`
}

type pluginVersions struct {
	Binary   pluginBinary `json:"binary"`
	Versions []string     `json:"versions"`
}

// statPlugin identifies the binary at path, following symlinks as the exec does.
func statPlugin(path string) (pluginBinary, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return pluginBinary{}, err
	}
	return pluginBinary{Path: path, Dev: st.Dev, Ino: st.Ino, Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, nil
}

// readPluginVersions reads what an earlier start recorded; anything unreadable
// is as if nothing were (every plugin is asked again).
func readPluginVersions(stateDir string) map[string]pluginVersions {
	dir, err := os.Open(stateDir)
	if err != nil {
		return nil
	}
	defer dir.Close()
	data, err := readFileAt(dir, pluginVersionsFile)
	if err != nil || len(data) > maxPluginVersionsFile {
		return nil
	}
	var m map[string]pluginVersions
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return m
}

func writePluginVersions(stateDir string, m map[string]pluginVersions) error {
	return atomicfile.WriteJSON(filepath.Join(stateDir, pluginVersionsFile), m)
}
