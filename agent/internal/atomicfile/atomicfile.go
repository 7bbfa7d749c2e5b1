// Package atomicfile replaces small state files so that a crash, a kill -9 or a
// power loss at any instant leaves the old content or the new one, never a torn
// file: the journals and configs of monitors, pod records, agentd's state, the
// image store's index and blobs.
//
// WriteFile writes a temporary file in the target's directory, fsyncs it, renames
// it over the target and fsyncs the directory. Temporary files are named
// ".<name>.tmp-<random>", so concurrent writers (goroutines or processes) never
// share one, and readers that open the target by its name never see them. A
// writer holds a flock(2) on its temporary file until the rename; a temporary
// file nobody holds locked was left by a writer that died, and is removed by the
// next write of the same target (or by RemoveStale). The lock dies with its
// process, so there is no pid to trust and no age to guess.
//
// This package must stay small: agent-monitor imports it. It depends on the
// standard library and golang.org/x/sys only.
package atomicfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// tempInfix separates a target's name from the random part of its temporary
// files' names.
const tempInfix = ".tmp-"

// Option changes what WriteFile does.
type Option func(*options)

type options struct {
	beforeRename func()
}

// BeforeRename has WriteFile call f once the temporary file is written and
// synced, just before it replaces the target: where a crash point goes.
func BeforeRename(f func()) Option {
	return func(o *options) { o.beforeRename = f }
}

// maxAttempts bounds how often WriteFile starts over with a new temporary file
// when a concurrent RemoveStale took the one it had just created.
const maxAttempts = 10

// WriteFile replaces path with data, of mode perm (not changed by the umask):
// after a crash at any point, path holds its old content or data, and at most a
// temporary file is left, which the next WriteFile of path removes. The
// directory must exist.
func WriteFile(path string, data []byte, perm os.FileMode, opts ...Option) (err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := createLocked(dir, base)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
		f.Close() // releases the lock, after the rename
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if o.beforeRename != nil {
		o.beforeRename()
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("%s was replaced, but syncing its directory failed: %w", path, err)
	}
	// What writers of this file that died left. Best effort: the write is done.
	_ = removeStale(dir, tempPrefix(base))
	return nil
}

// createLocked creates a new temporary file for base in dir and locks it. A
// RemoveStale may find the file in the moment between its creation and its
// lock, take it for a dead writer's and remove it: the file is then unlinked
// when WriteFile holds the lock, and WriteFile starts over.
func createLocked(dir, base string) (*os.File, error) {
	for range maxAttempts {
		f, err := os.CreateTemp(dir, tempPrefix(base)+"*")
		if err != nil {
			return nil, err
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			f.Close() // a RemoveStale holds it, and removes it
			continue
		}
		if err != nil {
			os.Remove(f.Name())
			f.Close()
			return nil, &os.PathError{Op: "flock", Path: f.Name(), Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			os.Remove(f.Name())
			f.Close()
			return nil, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
		}
		if st.Nlink == 0 {
			f.Close() // a RemoveStale removed it
			continue
		}
		return f, nil
	}
	return nil, fmt.Errorf("creating a temporary file for %s in %s: removed under us %d times", base, dir, maxAttempts)
}

func tempPrefix(base string) string { return "." + base + tempInfix }

// IsTemp reports whether name (a file name, not a path) is that of a
// temporary file of WriteFile.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempInfix)
}

// RemoveStale removes the temporary files in dir that writers which died left
// behind, and keeps those of writers still at work.
func RemoveStale(dir string) error {
	return removeStale(dir, "")
}

// removeStale removes the unlocked temporary files in dir whose names start
// with prefix ("": any temporary file).
func removeStale(dir, prefix string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if !IsTemp(n) || !strings.HasPrefix(n, prefix) {
			continue
		}
		if err := removeIfStale(filepath.Join(dir, n)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeIfStale removes the temporary file p if no writer holds its lock.
func removeIfStale(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil // renamed into place, or removed, meanwhile
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil // not ours
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil // a writer at work
		}
		return &os.PathError{Op: "flock", Path: p, Err: err}
	}
	// Still the file we locked under that name? The writer may have renamed it
	// into place between our open and our lock.
	var now unix.Stat_t
	if err := unix.Lstat(p, &now); err != nil || now.Ino != st.Ino || now.Dev != st.Dev {
		return nil
	}
	if err := unix.Unlink(p); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "unlink", Path: p, Err: err}
	}
	return nil
}

// SyncDir fsyncs a directory, so that the entries created, renamed or removed in
// it survive a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteJSON writes v as JSON to path (mode 0600) with WriteFile. It also removes
// path+".tmp", the one temporary file every writer used before this package: only
// a crash can have left it, as each of these files has one writer.
func WriteJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := WriteFile(path, data, 0o600); err != nil {
		return err
	}
	_ = os.Remove(path + ".tmp")
	return nil
}
