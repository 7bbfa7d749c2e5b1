package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lockFile, in root and in run-dir, is flock(2)ed by the running agentd. A second agentd on the same state would
// otherwise restore (and, without live restore, stop) the first one's pods and start a second etcd member on its
// data before it found the API socket taken.
const lockFile = "agentd.lock"

// lockOrphanWait bounds how long lockState waits for a lock whose agentd is gone. The kernel drops a flock when the
// last descriptor of its open file goes: the killed agentd's, but also that of a child it forked an instant before
// (its copy of the descriptor table lives until the child's exec or exit closes it), and under load that takes
// milliseconds after agentd itself was reaped. An agentd restarted at once (systemd, a crash loop) must not fail on it.
var lockOrphanWait = 10 * time.Second // a var for tests

// lockWaiting, when set (tests), is called each time lockDir waits for an orphaned lock.
var lockWaiting func(path string)

// lockState takes the lock of every directory, or fails naming the agentd that holds one. The locks last as long as
// the process (the kernel drops them at exit, also after a crash); release drops them earlier. A lock held although
// the agentd that took it is dead is waited for, up to lockOrphanWait.
func lockState(dirs ...string) (release func(), err error) {
	var files []*os.File
	release = func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, dir := range dirs {
		f, err := lockDir(dir)
		if err != nil {
			release()
			return nil, err
		}
		files = append(files, f)
	}
	return release, nil
}

func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) // close-on-exec: monitors never inherit it
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.Now().Add(lockOrphanWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		pid := lockPid(path)
		if pid > 0 && processAlive(pid) || time.Now().After(deadline) {
			f.Close()
			holder := ""
			if pid > 0 {
				holder = fmt.Sprintf(" (pid %d)", pid)
			}
			if others := lockHolders(path, pid); others != "" {
				holder += ", its lock held by " + others + ","
			}
			return nil, fmt.Errorf("another agentd%s is running with this state directory, %s: stop it first, or give this one its own root and run-dir", holder, dir)
		}
		if lockWaiting != nil {
			lockWaiting(path)
		}
		time.Sleep(10 * time.Millisecond) // the dead agentd's descriptors are being closed
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// lockPid is the pid the lock's holder wrote into it, 0 if none.
func lockPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// lockHolders names the processes other than pid that have path open ("pid 12 (agent-monitor)"), for the error of a
// lock that stays taken: a process that inherited it keeps it after the agentd that took it ended. Best effort: ""
// when none is found.
func lockHolders(path string, pid int) string {
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return ""
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return ""
	}
	var out []string
	for _, p := range procs {
		n, err := strconv.Atoi(p.Name())
		if err != nil || n == os.Getpid() || n == pid {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Stat(filepath.Join(fdDir, fd.Name()), &st) != nil || st.Dev != want.Dev || st.Ino != want.Ino {
				continue
			}
			comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
			out = append(out, fmt.Sprintf("pid %d (%s)", n, strings.TrimSpace(string(comm))))
			break
		}
	}
	return strings.Join(out, ", ")
}
