package monitor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/mounts"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// The monitor turns container-controlled paths into mounts. A volume's directory
// is written by the container, so a subPath in it may have been replaced by a
// symlink (to "/", say) since the last run: it is resolved again at every start,
// beneath the volume's directory (symlinks resolve as if the volume were "/"), and
// what was resolved is pinned by a bind mount from its file descriptor, so no later
// swap can change what the container gets (kubelet's fix for CVE-2017-1002101 and
// CVE-2021-25741).

// subPathsDir holds a run's pinned subPaths, in the run's directory.
func subPathsDir(runDir string) string { return filepath.Join(runDir, "subpaths") }

// bindSubPaths returns mounts with every subPath resolved and pinned under the run's
// directory; the returned mounts' sources are the pins. On error what it pinned is
// unmounted again by the caller's unmountRun.
func bindSubPaths(mounts []protocol.Mount, runDir string) ([]protocol.Mount, error) {
	out := make([]protocol.Mount, len(mounts))
	copy(out, mounts)
	for i := range out {
		m := &out[i]
		if m.SubPath == "" {
			continue
		}
		pin, err := pinSubPath(m.Source, m.SubPath, filepath.Join(subPathsDir(runDir), strconv.Itoa(i)))
		if err != nil {
			return nil, fmt.Errorf("subPath %q of the volume mounted at %s: %w", m.SubPath, m.Destination, err)
		}
		m.Source, m.SubPath = pin, ""
	}
	return out, nil
}

// pinSubPath resolves sub beneath the directory volume, creating it as a directory
// when it does not exist, and bind-mounts the result at pin.
func pinSubPath(volume, sub, pin string) (string, error) {
	if filepath.IsAbs(sub) || !filepath.IsLocal(sub) {
		return "", errors.New("must be a relative path inside the volume")
	}
	root, err := os.OpenFile(volume, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open volume: %w", err)
	}
	defer root.Close()
	h, err := pathrs.OpenatInRoot(root, sub)
	if errors.Is(err, os.ErrNotExist) {
		mode := os.FileMode(0o755)
		if fi, serr := root.Stat(); serr == nil {
			mode = fi.Mode().Perm()
		}
		if h, err = pathrs.MkdirAllHandle(root, sub, mode); err != nil {
			return "", fmt.Errorf("cannot be created inside the volume (a symlink in it may lead to a missing path): %w", err)
		}
	}
	if err != nil {
		return "", err
	}
	defer h.Close()
	fi, err := h.Stat()
	if err != nil {
		return "", err
	}
	switch {
	case fi.IsDir():
		err = os.MkdirAll(pin, 0o700)
	case fi.Mode().IsRegular():
		if err = os.MkdirAll(filepath.Dir(pin), 0o700); err == nil {
			var f *os.File
			if f, err = os.OpenFile(pin, os.O_CREATE|os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600); err == nil {
				f.Close()
			}
		}
	default:
		return "", fmt.Errorf("is a %s, not a directory or a regular file", fi.Mode().Type())
	}
	if err != nil {
		return "", err
	}
	// The magic link names exactly the inode resolved above, whatever the path says now.
	src := fmt.Sprintf("/proc/self/fd/%d", h.Fd())
	if err := unix.Mount(src, pin, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("pin: %w", err)
	}
	return pin, nil
}

// unmountRun unmounts a run's rootfs and pinned subPaths and removes its directory.
func unmountRun(dir string) error { return mounts.RemoveUnmounted(dir) }
