package crilog

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A pod may be able to write into the log directory (a hostPath volume over it), and
// the monitor and agentd are root, so no log is opened by path. The log directory
// itself (agentd's log-dir) is configuration and is opened by path; every component
// beneath it is opened relative to its parent's fd with O_NOFOLLOW, and a file is
// first opened with O_PATH, checked with fstat, and only then opened for reading or
// writing through /proc/self/fd, so that a symlink, a FIFO, a device node or a hard
// link planted in its place is refused, never followed or opened. The writer keeps the
// fd of its directory, so a rotation or reopen later on is as safe as the first open.

var (
	// ErrNotBeneath is returned for a log path that is not a local path beneath the
	// log directory it is opened in.
	ErrNotBeneath = errors.New("not a path beneath the log directory")
	// ErrUnsafeFile is returned for a log file that is not a regular file with a
	// single link: something was planted in the log directory.
	ErrUnsafeFile = errors.New("not a regular file with one link (a symlink, FIFO, device or hard link planted in the log directory?)")
)

// maxCreateRaces bounds how often openFile retries when the file appears and
// disappears between its look and its create: a pod racing it must not make it spin.
const maxCreateRaces = 3

// Beneath returns path relative to root, refusing a path that is not beneath root.
func Beneath(root, path string) (string, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || !filepath.IsLocal(rel) || rel == "." {
		return "", &os.PathError{Op: "open", Path: path, Err: ErrNotBeneath}
	}
	return rel, nil
}

// splitName splits name, the path of a log file relative to root, into its directory
// and file name, refusing a name that is not a local path to a file.
func splitName(root, name string) (dir, base string, err error) {
	clean := filepath.Clean(name)
	if !filepath.IsLocal(clean) || clean == "." {
		return "", "", &os.PathError{Op: "open", Path: filepath.Join(root, name), Err: ErrNotBeneath}
	}
	dir, base = filepath.Split(clean)
	return filepath.Clean(dir), base, nil
}

// MkdirAll creates the directory rel and its missing parents beneath root (mode
// 0755), refusing a symlink or a non-directory in any component.
func MkdirAll(root, rel string) error {
	fd, err := openDir(root, rel, true)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// openDir opens the directory rel beneath root one component at a time without
// following symlinks, creating missing components when create is set. It returns a
// directory fd (close-on-exec) for the caller to close.
func openDir(root, rel string, create bool) (int, error) {
	fd, err := openRetry(unix.AT_FDCWD, root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: root, Err: err}
	}
	if rel == "." || rel == "" {
		return fd, nil
	}
	if !filepath.IsLocal(rel) {
		unix.Close(fd)
		return -1, &os.PathError{Op: "open", Path: filepath.Join(root, rel), Err: ErrNotBeneath}
	}
	walked := root
	for _, name := range strings.Split(filepath.Clean(rel), "/") {
		walked = filepath.Join(walked, name)
		next, err := openDirAt(fd, name, create)
		unix.Close(fd)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: walked, Err: err}
		}
		fd = next
	}
	return fd, nil
}

// openDirAt opens the directory name in dir without following a symlink (ELOOP) or
// opening anything but a directory (ENOTDIR).
func openDirAt(dir int, name string, create bool) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := openRetry(dir, name, flags, 0)
	if err == unix.ENOENT && create {
		if err := unix.Mkdirat(dir, name, 0o755); err != nil && err != unix.EEXIST {
			return -1, err
		}
		fd, err = openRetry(dir, name, flags, 0)
	}
	return fd, err
}

// openFile opens name in dir for flags (O_RDONLY, or O_WRONLY|O_APPEND, with O_CREAT
// to create a missing file with perm). It never follows a symlink, and never opens
// anything but a regular file with one link: a device or FIFO is not even opened, so
// opening has no side effect and cannot block. It returns a bare error (an errno or
// ErrUnsafeFile) so that a writer retrying on every batch allocates little.
func openFile(dir int, name string, flags int, perm uint32) (int, error) {
	create := flags&unix.O_CREAT != 0
	flags &^= unix.O_CREAT | unix.O_EXCL
	for range maxCreateRaces {
		p, err := openRetry(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && create {
			// O_EXCL: only a new file, and never through a symlink.
			fd, err := openRetry(dir, name, flags|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, perm)
			if err == unix.EEXIST {
				continue // created meanwhile: look at what it is
			}
			return fd, err
		}
		if err != nil {
			return -1, err
		}
		fd, err := reopenRegular(p, flags)
		unix.Close(p)
		return fd, err
	}
	return -1, unix.EEXIST
}

// reopenRegular opens the file the O_PATH fd p refers to with flags, if it is a regular
// file with one link. Reopening through /proc/self/fd reaches the inode fstat checked,
// whatever has been renamed since.
func reopenRegular(p int, flags int) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(p, &st); err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return -1, ErrUnsafeFile
	}
	var buf [32]byte
	path := strconv.AppendInt(append(buf[:0], "/proc/self/fd/"...), int64(p), 10)
	return openRetry(unix.AT_FDCWD, string(path), flags|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
}

// sameFile reports whether name in dir (not following a symlink) is the file st describes.
func sameFile(dir int, name string, st *unix.Stat_t) (same bool, size int64, err error) {
	var cur unix.Stat_t
	if err := unix.Fstatat(dir, name, &cur, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, 0, err
	}
	return cur.Dev == st.Dev && cur.Ino == st.Ino, cur.Size, nil
}

func openRetry(dir int, name string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, flags, perm)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
