package protocol

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The termination message file (Termination.HostPath) is made by agentd before the
// monitor starts, emptied by the monitor before every run and read by it after
// every exit. These two functions are all either side does with it.

// MaxTerminationMessage is how much of a termination message is kept, kubelet's limit.
const MaxTerminationMessage = 4096

// PrepareTerminationLog creates the host file of a container's termination message
// (and its directory, root's alone) when missing, empties it when reset is set, and
// makes it writable by any container user, as kubelet does. It never follows a
// symlink and never blocks; anything but a regular file is refused.
func PrepareTerminationLog(path string, reset bool) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("termination log: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("termination log %s is not a regular file", path)
	}
	if reset {
		if err := f.Truncate(0); err != nil {
			return err
		}
	}
	return f.Chmod(0o666)
}

// ReadTerminationLog reads at most MaxTerminationMessage bytes of the host file
// path, only if it is a regular file: never through a symlink, never blocking.
func ReadTerminationLog(path string) string {
	if path == "" {
		return ""
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	buf := make([]byte, MaxTerminationMessage)
	n, _ := io.ReadFull(f, buf)
	return string(buf[:n])
}
