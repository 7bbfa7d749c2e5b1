package layerfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnsafePath is wrapped by the error Unpack returns for an entry that would
// leave the target directory: an absolute name, a name or hard-link target
// with "..", or a path through a symbolic link.
var ErrUnsafePath = errors.New("unsafe path in layer")

// tree is a directory that is written only through file descriptors and *at
// system calls that never follow a symbolic link, so nothing a layer creates
// in it can redirect a later write outside it.
type tree struct {
	fd   int    // O_RDONLY|O_DIRECTORY descriptor of the top directory
	path string // for error messages only
	// beforeMkdir, if set, is called with the path of every missing
	// directory openDir is about to create; an error stops it.
	beforeMkdir func(rel string) error
}

// openTree creates dir if needed and opens it. dir itself comes from the
// caller and is trusted (it may be reached through a symlink).
func openTree(dir string) (*tree, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return &tree{fd: fd, path: dir}, nil
}

func (t *tree) close() { unix.Close(t.fd) }

// cleanRel turns an archive path into a clean path relative to the tree
// ("." for the top), rejecting absolute paths and paths that climb out of it.
func cleanRel(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: %q is absolute", ErrUnsafePath, name)
	}
	rel := path.Clean(name)
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: %q climbs out of the layer with \"..\"", ErrUnsafePath, name)
	}
	return rel, nil
}

// openDir opens the directory rel (a clean relative path) one component at a
// time with O_NOFOLLOW. A component that is a symlink is an ErrUnsafePath
// error; a missing one is created (mode 0755) when create is set. The caller
// closes the returned descriptor.
func (t *tree) openDir(rel string, create bool) (int, error) {
	fd, err := unix.Dup(t.fd)
	if err != nil {
		return -1, err
	}
	if rel == "." {
		return fd, nil
	}
	done := ""
	for _, c := range strings.Split(rel, "/") {
		done = path.Join(done, c)
		next, err := openDirAt(fd, c)
		if errors.Is(err, unix.ENOENT) && create && t.beforeMkdir != nil {
			if herr := t.beforeMkdir(done); herr != nil {
				unix.Close(fd)
				return -1, herr
			}
		}
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = openDirAt(fd, c)
				if err == nil {
					err = unix.Fchmod(next, 0o755) // whatever the umask
				}
			}
		}
		unix.Close(fd)
		if err != nil {
			if next >= 0 {
				unix.Close(next)
			}
			return -1, t.dirError(done, err)
		}
		fd = next
	}
	return fd, nil
}

// dirError explains why the directory rel could not be opened.
func (t *tree) dirError(rel string, err error) error {
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		var st unix.Stat_t
		if unix.Fstatat(t.fd, rel, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("%w: %s is a symbolic link, refusing to go through it", ErrUnsafePath, rel)
		}
	}
	return &fs.PathError{Op: "open", Path: path.Join(t.path, rel), Err: err}
}

func openDirAt(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// openParent opens the directory that holds rel and returns it with rel's
// last element.
func (t *tree) openParent(rel string, create bool) (int, string, error) {
	if rel == "." {
		return -1, "", errors.New("the layer's top directory cannot be replaced")
	}
	fd, err := t.openDir(path.Dir(rel), create)
	return fd, path.Base(rel), err
}

// lstatAt returns the type of name in dirfd without following a symlink;
// exists is false when there is nothing there.
func lstatAt(dirfd int, name string) (st unix.Stat_t, exists bool, err error) {
	err = unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	return st, err == nil, err
}

// removeAt removes name from dirfd, recursively when it is a directory.
// Nothing there is not an error.
func removeAt(dirfd int, name string) error {
	st, exists, err := lstatAt(dirfd, name)
	if err != nil || !exists {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(dirfd, name, 0)
	}
	if err := clearDirAt(dirfd, name); err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// clearDirAt removes everything inside the directory name of dirfd.
func clearDirAt(dirfd int, name string) error {
	fd, err := openDirAt(dirfd, name)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return clearDir(f)
}

func clearDir(f *os.File) error {
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := removeAt(int(f.Fd()), n); err != nil {
			return err
		}
	}
	return nil
}

// meta is what a layer records about a file besides its content.
type meta struct {
	mode   uint32 // permission bits with setuid, setgid and sticky
	uid    int
	gid    int
	atime  time.Time
	mtime  time.Time
	xattrs map[string][]byte
}

// skipXattr reports xattrs a layer may not set: the overlay ones are the
// store's to write (whiteouts, opaque directories), never the image's.
func skipXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.")
}

// setMeta applies m to name in dirfd (to dirfd itself when name is "") without
// following a symlink. Order matters: chown clears setuid bits and file
// capabilities, so mode and xattrs come after it; times come last.
func setMeta(dirfd int, name string, isLink bool, m meta) error {
	empty := 0
	if name == "" {
		empty = unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(dirfd, name, m.uid, m.gid, unix.AT_SYMLINK_NOFOLLOW|empty); err != nil {
		// Without root a layer's owners cannot be reproduced; keep ours.
		if os.Geteuid() == 0 {
			return fmt.Errorf("chown %d:%d: %w", m.uid, m.gid, err)
		}
	}
	if !isLink {
		var err error
		if name == "" {
			err = unix.Fchmod(dirfd, m.mode)
		} else {
			err = unix.Fchmodat(dirfd, name, m.mode, 0)
		}
		if err != nil {
			return fmt.Errorf("chmod %o: %w", m.mode, err)
		}
	}
	for k, v := range m.xattrs {
		if skipXattr(k) {
			continue
		}
		var err error
		if name == "" {
			err = unix.Fsetxattr(dirfd, k, v, 0)
		} else {
			err = unix.Lsetxattr(procPath(dirfd, name), k, v, 0)
		}
		// "Where possible": a filesystem without xattrs, a namespace we may
		// not write (trusted.* without root, user.* on a symlink).
		if err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setting xattr %s: %w", k, err)
		}
	}
	ts := []unix.Timespec{timespec(m.atime), timespec(m.mtime)}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW|empty); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

func fileFromFd(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// procPath names name inside the directory dirfd for the calls that have no
// *at form (lsetxattr, lgetxattr). The kernel resolves /proc/self/fd/N to the
// directory itself, so only name's own lookup remains, and the l* calls do
// not follow it.
func procPath(dirfd int, name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd)
	if name != "" {
		p += "/" + name
	}
	return p
}

// ensureDir makes rel a directory: a non-directory in its place is removed, a missing
// one created (mode 0700 until its metadata is applied). It returns an fd of rel's
// parent (the caller closes it), rel's name in it, and whether the directory existed.
func (t *tree) ensureDir(rel string) (dirfd int, name string, existed bool, err error) {
	dirfd, name, err = t.openParent(rel, true)
	if err != nil {
		return -1, "", false, err
	}
	st, exists, err := lstatAt(dirfd, name)
	if err == nil && exists && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err = unix.Unlinkat(dirfd, name, 0); err != nil {
			err = fmt.Errorf("replacing existing %s: %w", rel, err)
		}
		exists = false
	}
	if err == nil && !exists {
		err = unix.Mkdirat(dirfd, name, 0o700)
	}
	if err != nil {
		unix.Close(dirfd)
		return -1, "", false, err
	}
	return dirfd, name, exists, nil
}
