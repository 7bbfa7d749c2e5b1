package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
)

// A monitor's state directory is <run-dir>/MonitorsDir/<ContainerConfig.ID>/. agentd
// creates it and writes ConfigFile; the monitor writes JournalFile and serves
// SocketFile; whoever works on the container holds LockFile's lock. The monitor
// keeps each run's rootfs in Rootfs.RunsDir/<Run.ContainerID>/ (on disk, under
// agentd's root), or, for a config written before Rootfs.RunsDir, in
// RunsDir/<Run.ContainerID>/ of the state directory. A newer agentd and a newer
// agent-monitor find an older monitor's directory by these names, so they never change.
const (
	MonitorsDir = "monitors"     // under agentd's run-dir
	ConfigFile  = "config.json"  // ContainerConfig, written by agentd before the monitor starts
	JournalFile = "journal.json" // Journal, rewritten atomically by the monitor
	SocketFile  = "ctl.sock"     // control socket
	LockFile    = "monitor.lock" // see Lock
	RunsDir     = "runs"         // one directory per run, named by its container ID
)

// StateDir is the state directory of monitor id under agentd's run-dir. id must
// be one path component (the runtime checks it).
func StateDir(runDir, id string) string {
	return filepath.Join(runDir, MonitorsDir, id)
}

// RunStateDir is where run containerID of a monitor whose config has no
// Rootfs.RunsDir (one written by an older agentd) keeps its run directory.
func RunStateDir(stateDir, containerID string) string {
	return filepath.Join(stateDir, RunsDir, containerID)
}

// ErrBadRunsDir is returned for a Rootfs.RunsDir that is not an absolute, clean path.
var ErrBadRunsDir = errors.New("the container's runs directory is not an absolute, clean path")

// CheckRunsDir proves that dir, a Rootfs.RunsDir, is absolute and clean (so
// without "..") and not the root: the monitor creates and removes beneath it.
func CheckRunsDir(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
		return fmt.Errorf("%w: %q", ErrBadRunsDir, dir)
	}
	return nil
}

// RunsRoot is the directory that holds a monitor's run directories:
// cfg.Rootfs.RunsDir, or, in a config written before it existed, the state
// directory's RunsDir. A RunsDir that CheckRunsDir refuses is an error.
func RunsRoot(cfg *ContainerConfig, stateDir string) (string, error) {
	if cfg.Rootfs.RunsDir == "" {
		return filepath.Join(stateDir, RunsDir), nil
	}
	if err := CheckRunsDir(cfg.Rootfs.RunsDir); err != nil {
		return "", fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	// agentd gives each container its own, <dir>/<id>/runs: the monitor creates
	// and removes beneath it, so a record naming any other place is refused.
	if rd := cfg.Rootfs.RunsDir; filepath.Base(rd) != RunsDir || filepath.Base(filepath.Dir(rd)) != cfg.ID {
		return "", fmt.Errorf("container %s: %w: %q is not a directory %s/%s/", cfg.ID, ErrBadRunsDir, rd, cfg.ID, RunsDir)
	}
	return cfg.Rootfs.RunsDir, nil
}

// RunDir is where run containerID of a monitor keeps its rootfs, its upper layer
// and its pinned subPaths: RunsRoot/<containerID>/. It is made before the run's
// container is created and removed once the run is destroyed. containerID must be
// one path component.
func RunDir(cfg *ContainerConfig, stateDir, containerID string) (string, error) {
	if containerID == "" || containerID == "." || !filepath.IsLocal(containerID) || strings.ContainsAny(containerID, "/\x00") {
		return "", fmt.Errorf("container %s: run %q is not a single path component", cfg.ID, containerID)
	}
	root, err := RunsRoot(cfg, stateDir)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, containerID), nil
}

// ReadConfig reads the container config agentd wrote into a monitor's state dir.
func ReadConfig(stateDir string) (*ContainerConfig, error) {
	var cfg ContainerConfig
	if err := readJSON(filepath.Join(stateDir, ConfigFile), &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// WriteConfig writes a container's config into its monitor's state dir, atomically.
func WriteConfig(stateDir string, cfg *ContainerConfig) error {
	return atomicfile.WriteJSON(filepath.Join(stateDir, ConfigFile), cfg)
}

// ReadJournal reads a monitor's journal.
func ReadJournal(stateDir string) (*Journal, error) {
	var j Journal
	if err := readJSON(filepath.Join(stateDir, JournalFile), &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// WriteJournal replaces the journal atomically, so that a reader sees the old or
// the new journal, never a torn one, whenever the writer dies. It keeps the most
// recent MaxJournalRuns runs.
func WriteJournal(stateDir string, j *Journal) error {
	// Only monitors write journals: the stamp says what the writer speaks.
	j.Speaks = &Speaks{Protocol: Name, Major: Major, Minor: Minor}
	if n := len(j.Runs); n > MaxJournalRuns {
		j.Runs = append([]Run(nil), j.Runs[n-MaxJournalRuns:]...)
	}
	return atomicfile.WriteJSON(filepath.Join(stateDir, JournalFile), j)
}

// maxStateFile bounds what readStateFile reads: configs and journals are a few
// KiB; a file planted in their place must not fill agentd's memory.
const maxStateFile = 4 << 20

// readStateFile reads a file of a monitor's state directory with plain system
// calls (agentd's restore reads every monitor's: os.Open of a regular file costs
// six, putting the descriptor in and out of non-blocking mode). O_NONBLOCK makes a
// FIFO planted there read as empty instead of blocking the open, and O_NOFOLLOW
// refuses a symlink (the monitor writes its files by rename, never as links).
func readStateFile(path string) ([]byte, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 8<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN: // a FIFO with a writer: not a state file
			return buf, nil
		case err != nil:
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) > maxStateFile {
			return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than %d bytes: not a state file", maxStateFile)}
		}
	}
}

func readJSON(path string, v any) error {
	data, err := readStateFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// LogPath is where run number restartCount of a container logs: Log.File beneath
// Log.Root when it is set (callers check it with CheckFile first), else
// <Log.Dir>/<restartCount>.log.
func LogPath(cfg *ContainerConfig, restartCount int) string {
	if cfg.Log.File != "" {
		return filepath.Join(cfg.Log.Root, cfg.Log.File)
	}
	return filepath.Join(cfg.Log.Dir, strconv.Itoa(restartCount)+".log")
}

// ErrBadLogFile is returned for a LogConfig.File that does not name a file beneath
// its log root.
var ErrBadLogFile = errors.New("log file is not a clean relative path beneath the log root")

// CheckFile proves that File, when set, names a file beneath Root by its shape: a
// clean relative path without "..", below an absolute Root. It does not look at
// the disk: the components beneath Root are opened without following symlinks
// when the log is opened (crilog), whatever is planted there later.
func (l *LogConfig) CheckFile() error {
	if l.File == "" {
		return nil
	}
	if !filepath.IsAbs(l.Root) {
		return fmt.Errorf("%w: log file %q has no absolute log root (root %q)", ErrBadLogFile, l.File, l.Root)
	}
	if !filepath.IsLocal(l.File) || filepath.Clean(l.File) != l.File || l.File == "." {
		return fmt.Errorf("%w: log file %q under %s", ErrBadLogFile, l.File, l.Root)
	}
	return nil
}

// LogRoot is the trusted directory (agentd's log-dir) a container's log files are
// opened beneath, without following symlinks (package crilog).
func LogRoot(cfg *ContainerConfig) string {
	if cfg.Log.Root != "" {
		return cfg.Log.Root
	}
	// A config written before Log.Root: Dir is <log-dir>/<pod dir>/<container>.
	return filepath.Dir(filepath.Dir(filepath.Clean(cfg.Log.Dir)))
}

// maxSocketPath is the longest path bind(2) and connect(2) take for a Unix socket.
const maxSocketPath = 107

// SocketAddr returns an address of stateDir's control socket that fits a Unix
// socket address: its path when short enough, else /proc/self/fd/<n>/ctl.sock
// through an O_PATH descriptor of stateDir, which the caller closes with the
// returned func once it has bound or connected.
func SocketAddr(stateDir string) (string, func(), error) {
	p := filepath.Join(stateDir, SocketFile)
	if len(p) <= maxSocketPath {
		return p, func() {}, nil
	}
	fd, err := unix.Open(stateDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, SocketFile), func() { unix.Close(fd) }, nil
}

// ErrLocked is returned by Lock when another process holds the lock.
var ErrLocked = errors.New("the container's monitor state is locked by a running process")

// Lock takes stateDir's LockFile lock without waiting (ErrLocked when it is held).
//
// The lock is held for as long as a process works on that container: from before
// agentd writes the container's config, by the monitor through every image of its
// life (the lock is on an open file description, which agentd hands to
// `agent-monitor start` as LockFd and each image hands to the next), and by
// `agent-monitor kill` while it cleans up after a dead monitor. The kernel drops
// the lock when the last holder exits, so unlike a recorded pid it is never stale,
// and it covers the moments no journal names the monitor yet (before its first
// journal write). It is an OFD write lock on the whole file (fcntl F_OFD_SETLK),
// so that Locked can test it without taking it.
//
// The lock lasts until every descriptor of the returned file is closed; the file
// is close-on-exec, so hand it on explicitly.
func Lock(stateDir string) (*os.File, error) {
	path := filepath.Join(stateDir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("monitor lock: %w", err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("monitor lock %s: %w", path, err)
	}
	return f, nil
}

// Locked reports whether a process holds stateDir's lock. It does not take the
// lock, so it never disturbs a Lock running at the same time.
func Locked(stateDir string) bool {
	fd, err := unix.Open(filepath.Join(stateDir, LockFile), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}
