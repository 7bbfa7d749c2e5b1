package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/crilog"
)

// ReadConfig reads the container config agentd wrote into a monitor's state dir.
func ReadConfig(stateDir string) (*protocol.ContainerConfig, error) {
	var cfg protocol.ContainerConfig
	if err := readJSON(filepath.Join(stateDir, protocol.ConfigFile), &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// ReadJournal reads a monitor's journal.
func ReadJournal(stateDir string) (*protocol.Journal, error) {
	var j protocol.Journal
	if err := readJSON(filepath.Join(stateDir, protocol.JournalFile), &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// WriteJournal replaces the journal atomically (see WriteFileAtomic), so a
// reader sees the old or the new journal, never a torn one.
func WriteJournal(stateDir string, j *protocol.Journal) error {
	if n := len(j.Runs); n > protocol.MaxJournalRuns {
		j.Runs = append([]protocol.Run(nil), j.Runs[n-protocol.MaxJournalRuns:]...)
	}
	return WriteFileAtomic(filepath.Join(stateDir, protocol.JournalFile), j)
}

// WriteFileAtomic writes v as JSON to path (mode 0600) so that a crash or a
// power loss at any instant leaves the old file or the new one: a temporary
// file of its own in path's directory, fsync, rename, fsync of the directory
// (package atomicfile). Readers open path by name and never see temporary
// files; one that a killed writer left is removed by the next write of path.
func WriteFileAtomic(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	// The temporary file of writers before atomicfile: one path for all of
	// them, so only a crash can have left it (each file has one writer).
	_ = os.Remove(path + ".tmp")
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ProcessStartTime returns field 22 of /proc/<pid>/stat (start time in clock ticks
// since boot): with the pid it identifies a process even after pid reuse.
func ProcessStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// ProcessAlive reports whether pid is the process that started at start and has
// not exited: a zombie (exited, not yet reaped by its parent — for a detached
// monitor that is pid 1) counts as gone.
func ProcessAlive(pid int, start uint64) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return false
	}
	if st, err := strconv.ParseUint(fields[19], 10, 64); err != nil || st != start {
		return false
	}
	if fields[0] != "Z" && fields[0] != "X" {
		return true
	}
	// A zombie leader whose other threads still run is a process in the middle of
	// exiting (or of an exec from another thread): not gone yet.
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	return err == nil && len(tasks) > 1
}

// LogPath is where run number restartCount of a container logs.
func LogPath(cfg *protocol.ContainerConfig, restartCount int) string {
	return filepath.Join(cfg.Log.Dir, strconv.Itoa(restartCount)+".log")
}

// LogRoot is the trusted directory (agentd's log-dir) a container's log files are
// opened beneath, by crilog, without following symlinks.
func LogRoot(cfg *protocol.ContainerConfig) string {
	if cfg.Log.Root != "" {
		return cfg.Log.Root
	}
	// A config written before Log.Root: Dir is <log-dir>/<pod dir>/<container>.
	return filepath.Dir(filepath.Dir(filepath.Clean(cfg.Log.Dir)))
}

// LogFile splits a run's log path into LogRoot and the file's path beneath it.
func LogFile(cfg *protocol.ContainerConfig, logPath string) (root, name string, err error) {
	root = LogRoot(cfg)
	name, err = crilog.Beneath(root, logPath)
	return root, name, err
}

// maxSocketPath is the longest path bind(2) and connect(2) take for a Unix socket.
const maxSocketPath = 107

// SocketPath returns a path to the socket file name in dir that fits a Unix
// socket address: dir itself when short enough, else /proc/self/fd/<n>/name through
// an O_PATH descriptor of dir, which the caller closes with the returned func.
func SocketPath(dir, name string) (string, func(), error) {
	p := filepath.Join(dir, name)
	if len(p) <= maxSocketPath {
		return p, func() {}, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, name), func() { unix.Close(fd) }, nil
}
