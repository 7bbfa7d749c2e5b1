package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LockFile, in a monitor's state directory, is locked for as long as a process
// works on that container: from before agentd writes the container's config, by
// the monitor through every image of its life (the lock is on an open file
// description, which agentd hands to `agent-monitor start` and each image hands
// to the next), and by `agent-monitor kill` while it cleans up after a dead
// monitor. The kernel drops the lock when the last holder exits, so unlike a
// recorded pid it is never stale, and it covers the moments no journal names the
// monitor yet (before its first journal write).
const LockFile = "monitor.lock"

// ErrLocked is returned by Lock when another process holds the lock.
var ErrLocked = errors.New("the container's monitor state is locked by a running process")

// Lock takes stateDir's lock without waiting (ErrLocked when it is held). The
// lock lasts until every descriptor of the returned file is closed; the file is
// close-on-exec, so hand it on explicitly.
func Lock(stateDir string) (*os.File, error) {
	path := filepath.Join(stateDir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("monitor lock: %w", err)
	}
	// An OFD lock (not flock) so that Locked can test it without taking it.
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
	f, err := os.OpenFile(filepath.Join(stateDir, LockFile), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}
