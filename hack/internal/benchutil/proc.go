package benchutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on Linux).
const ClockTicks = 100

// StatFields returns the fields of a /proc/<pid>/stat (or .../task/<tid>/stat)
// file after the command name: f[0] is the state (field 3 of proc(5)), f[1] the
// parent pid, f[11] utime (14), f[12] stime (15).
func StatFields(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("%s: malformed", path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("%s: malformed", path)
	}
	return f, nil
}

// CPUTicks is a process's user+system CPU time in clock ticks, all its threads
// (live and exited) counted, its children not. It survives exec.
func CPUTicks(pid int) (int64, error) {
	f, err := StatFields(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("pid %d: bad stat times", pid)
	}
	return u + s, nil
}

// CPUTime is the CPU time of a process's live threads from their schedstat
// (nanoseconds), falling back to CPUTicks (10 ms resolution); 0 when neither
// can be read.
func CPUTime(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	if sum > 0 {
		return time.Duration(sum)
	}
	t, err := CPUTicks(pid)
	if err != nil {
		return 0
	}
	return time.Duration(t) * time.Second / ClockTicks
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	f, err := StatFields(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && f[0] != "Z" && f[0] != "X"
}

// NoThreadLeft reports whether no thread of process pid runs any more: the
// process is gone or a zombie. A zombie thread-group leader alone is not
// enough: it shows as one while another thread of a multi-threaded process
// execs (agent-monitor-lean execs `agent-monitor next` to clean up after its
// container).
func NoThreadLeft(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, t := range tasks {
		f, err := StatFields(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err == nil && f[0] != "Z" && f[0] != "X" {
			return false
		}
	}
	return true
}

// CtxSwitches sums voluntary and involuntary context switches over the threads
// a process has now (threads that exited are not counted: an approximation).
func CtxSwitches(pid int) int64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// MemStat is a process's memory as /proc/<pid>/smaps_rollup and status show
// it, in kB.
type MemStat struct {
	Pid                        int
	Rss, Pss, PssAnon, PssFile int64
	Anonymous                  int64
	PrivateClean, PrivateDirty int64
	Threads                    int
}

// USS is the memory only this process holds.
func (m MemStat) USS() int64 { return m.PrivateClean + m.PrivateDirty }

// KBField parses the fields of one smaps line such as "Pss: 123 kB": its name
// with the colon, and the number.
func KBField(fields []string) (name string, kB int64, ok bool) {
	if len(fields) < 2 {
		return "", 0, false
	}
	v, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return fields[0], v, true
}

// ReadMem reads a process's memory. On an error the fields read so far are set
// (Pss is 0 when smaps_rollup could not be read).
func ReadMem(pid int) (MemStat, error) {
	m := MemStat{Pid: pid}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, err
	}
	fields := map[string]*int64{"Rss:": &m.Rss, "Pss:": &m.Pss, "Pss_Anon:": &m.PssAnon, "Pss_File:": &m.PssFile,
		"Anonymous:": &m.Anonymous, "Private_Clean:": &m.PrivateClean, "Private_Dirty:": &m.PrivateDirty}
	for _, line := range strings.Split(string(data), "\n") {
		name, v, ok := KBField(strings.Fields(line))
		if !ok {
			continue
		}
		if p := fields[name]; p != nil {
			*p = v
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			m.Threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return m, nil
}

// ExeName is the base name of a process's executable, "?" when unreadable.
func ExeName(pid int) string {
	p, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "?"
	}
	return filepath.Base(p)
}

// Ancestors are this process and its parents up to pid 1 (a `go run`, the
// script that started us), to be skipped when looking for a run's leftovers.
func Ancestors() map[int]bool {
	out := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !out[pid]; {
		out[pid] = true
		f, err := StatFields(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			break
		}
		if pid, err = strconv.Atoi(f[1]); err != nil {
			break
		}
	}
	return out
}

// Process is what /proc shows of one process, for finding what a run left.
type Process struct {
	Pid            int
	Cmd            string // command line, arguments joined by spaces ("" for kernel threads and zombies)
	Exe, Root, Cwd string // /proc/<pid>/{exe,root,cwd}; "" when unreadable
	Cgroup         string // /proc/<pid>/cgroup
}

// Processes lists every process but those in skip (zombies included: see Alive).
func Processes(skip map[int]bool) []Process {
	entries, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || skip[pid] {
			continue
		}
		p := Process{Pid: pid}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		p.Cmd = strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		p.Exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		p.Root, _ = os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
		p.Cwd, _ = os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		p.Cgroup = string(cg)
		out = append(out, p)
	}
	return out
}

// InCgroup reports whether the process is in cgroup parent or below it, in any
// hierarchy.
func (p Process) InCgroup(parent string) bool {
	if parent == "" {
		return false
	}
	for _, line := range strings.Split(p.Cgroup, "\n") {
		if i := strings.LastIndexByte(line, ':'); i >= 0 {
			if c := line[i+1:]; c == parent || strings.HasPrefix(c, parent+"/") {
				return true
			}
		}
	}
	return false
}

// Uses reports whether dir is in the process's command line or its root or
// working directory is under dir (monitors name their state directory,
// containers' roots are under the work directory, helpers run in it).
func (p Process) Uses(dir string) bool {
	return strings.Contains(p.Cmd, dir) || strings.HasPrefix(p.Root, dir) || strings.HasPrefix(p.Cwd, dir)
}

// WaitUntil polls cond every 2 ms until it holds (true) or the timeout passes
// or ctx is done (false).
func WaitUntil(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// SleepCtx sleeps d or until ctx is done; false if it is.
func SleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
