// Package cgroupkill signals the processes of a cgroup without signalling any
// other: by cgroup.kill where the kernel has it, and otherwise pid by pid, each
// pinned by a pidfd and checked to be in the cgroup still. agentd and both images
// of the monitor use it; it needs nothing but x/sys.
package cgroupkill

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrBadCgroup is returned for a cgroup path that is not clean and absolute, or
// is the root: killing "everything below" it would reach processes that are none
// of a container's.
var ErrBadCgroup = errors.New("not a clean absolute cgroup path below the root")

// ErrNotMember is returned by Pid for a process that runs but is not in the
// cgroup: it was not signalled.
var ErrNotMember = errors.New("process is not in the cgroup")

// cgroupRoot is where the hierarchies are mounted; a variable for tests.
var cgroupRoot = "/sys/fs/cgroup"

// CheckPath proves that path names one cgroup below the root: absolute,
// clean (so without ".."), not "/", no NUL.
func CheckPath(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" || strings.ContainsRune(path, 0) {
		return fmt.Errorf("cgroup %q: %w", path, ErrBadCgroup)
	}
	return nil
}

// Cgroup sends SIGKILL, once, to every process in the cgroup at path and below
// it, in every mounted hierarchy. On cgroup v2 (or the hybrid layout's unified
// hierarchy) it writes cgroup.kill first, which the kernel carries out without
// pids; then it signals every pid it reads from cgroup.procs, each through a pidfd
// and only while the process is still in the cgroup (Pid): a pid read
// from cgroup.procs may have been reused since by a process that is none of
// ours. It returns the pids it found; a caller that must see the cgroup empty
// calls it again until it finds none.
func Cgroup(path string) ([]int, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	for _, root := range Hierarchies() {
		if isCgroup2(root) {
			// ENOENT: no such cgroup here, or a kernel before 5.14 (no cgroup.kill).
			_ = os.WriteFile(filepath.Join(root, path, "cgroup.kill"), []byte("1"), 0)
		}
	}
	pids := Procs(path)
	for _, pid := range pids {
		_ = Pid(pid, path, unix.SIGKILL)
	}
	return pids, nil
}

// Pid sends sig to pid if, and only if, the process is in the cgroup at
// path or below it in some hierarchy. The process is pinned by a pidfd before its
// membership is read from /proc/<pid>/cgroup, so the check and the signal are about
// the same process even if pid is reused meanwhile. A process that is gone is not
// an error; one that is not in the cgroup is ErrNotMember.
func Pid(pid int, path string, sig unix.Signal) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	if pid <= 0 {
		return fmt.Errorf("pid %d: not a process", pid)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil
	case errors.Is(err, unix.ENOSYS): // before Linux 5.3: check, then signal by pid
		if err := member(pid, path); err != nil {
			return ignoreGone(err)
		}
		return ignoreGone(unix.Kill(pid, sig))
	case err != nil:
		return fmt.Errorf("pidfd of pid %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if err := member(pid, path); err != nil {
		return ignoreGone(err)
	}
	return ignoreGone(unix.PidfdSendSignal(fd, sig, nil, 0))
}

func ignoreGone(err error) error {
	if errors.Is(err, unix.ESRCH) || errors.Is(err, errGone) {
		return nil
	}
	return err
}

var errGone = errors.New("process is gone")

// member reads /proc/<pid>/cgroup: nil when the process is in the cgroup at path
// or below, errGone when it exited meanwhile, ErrNotMember otherwise.
func member(pid int, path string) error {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH):
		return errGone
	case err != nil:
		return err
	case !Member(string(data), path):
		return fmt.Errorf("pid %d, cgroup %s: %w", pid, path, ErrNotMember)
	}
	return nil
}

// Member reports whether a /proc/<pid>/cgroup text puts the process in the
// cgroup at path or below it, in any hierarchy.
func Member(procCgroup, path string) bool {
	for _, line := range strings.Split(procCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (parts[2] == path || strings.HasPrefix(parts[2], path+"/")) {
			return true
		}
	}
	return false
}

// Procs lists the processes in the cgroup at path and below it, in every
// mounted hierarchy (a process being moved in may be in some and not yet others).
func Procs(path string) []int {
	if CheckPath(path) != nil {
		return nil
	}
	seen := map[int]bool{}
	var out []int
	for _, root := range Hierarchies() {
		_ = filepath.WalkDir(filepath.Join(root, path), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 && !seen[pid] {
					seen[pid] = true
					out = append(out, pid)
				}
			}
			return nil
		})
	}
	return out
}

// Hierarchies are the mounted cgroup hierarchies: /sys/fs/cgroup itself on cgroup
// v2; on v1 (and the hybrid layout) each cgroup file system mounted below it, not
// the tmpfs that holds them. On v2 a directory below the root is a cgroup, not a
// hierarchy, so it is never taken for one.
func Hierarchies() []string {
	if isCgroup2(cgroupRoot) {
		return []string{cgroupRoot}
	}
	var out []string
	entries, _ := os.ReadDir(cgroupRoot)
	for _, e := range entries {
		if !e.IsDir() { // the cpu → cpu,cpuacct links
			continue
		}
		p := filepath.Join(cgroupRoot, e.Name())
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && (st.Type == unix.CGROUP_SUPER_MAGIC || st.Type == unix.CGROUP2_SUPER_MAGIC) {
			out = append(out, p)
		}
	}
	return out
}

func isCgroup2(p string) bool {
	var st unix.Statfs_t
	return unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}
