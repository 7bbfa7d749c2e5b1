package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockFile, in root and in run-dir, is flock(2)ed by the running agentd. A second agentd on the same state would
// otherwise restore (and, without live restore, stop) the first one's pods and start a second etcd member on its
// data before it found the API socket taken.
const lockFile = "agentd.lock"

// lockState takes the lock of every directory, or fails naming the agentd that holds one. The locks last as long as
// the process (the kernel drops them at exit, also after a crash); release drops them earlier.
func lockState(dirs ...string) (release func(), err error) {
	var files []*os.File
	release = func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, dir := range dirs {
		path := filepath.Join(dir, lockFile)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) // close-on-exec: monitors never inherit it
		if err != nil {
			release()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			holder := ""
			if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
				holder = " (pid " + strings.TrimSpace(string(b)) + ")"
			}
			f.Close()
			release()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("another agentd%s is running with this state directory, %s: stop it first, or give this one its own root and run-dir", holder, dir)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		files = append(files, f)
	}
	return release, nil
}
