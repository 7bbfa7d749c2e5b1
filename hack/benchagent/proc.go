package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on Linux).
const clockTicks = 100

// statFields returns the fields of /proc/<path>/stat after the command name:
// f[0] is the state (field 3 of proc(5)), f[11] utime (14), f[12] stime (15).
func statFields(path string) ([]string, error) {
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

// cpuTicks is a process's user+system CPU time in clock ticks, all its threads
// (live and exited) counted, its children not.
func cpuTicks(pid int) (int64, error) {
	f, err := statFields(fmt.Sprintf("/proc/%d/stat", pid))
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

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	f, err := statFields(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && f[0] != "Z" && f[0] != "X"
}

// noThreadLeft reports whether no thread of process pid runs any more. A zombie
// thread-group leader alone is not enough: it shows as one while another thread
// of a multi-threaded process execs (agent-monitor-lean execs `agent-monitor next`
// to clean up after its container).
func noThreadLeft(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, t := range tasks {
		f, err := statFields(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err == nil && f[0] != "Z" && f[0] != "X" {
			return false
		}
	}
	return true
}

// ctxSwitches sums voluntary and involuntary context switches over the threads
// a process has now (threads that exited are not counted: an approximation).
func ctxSwitches(pid int) int64 {
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

// memStat is a process's memory as /proc shows it, in kB.
type memStat struct {
	Rss, Pss int64
	Threads  int
}

func readMem(pid int) (memStat, error) {
	var m memStat
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			m.Rss = v
		case "Pss:":
			m.Pss = v
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

func exeName(pid int) string {
	p, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "?"
	}
	return filepath.Base(p)
}

// cgroupRoots are the cgroup hierarchies' mount points (v1 controllers, unified).
func cgroupRoots() []string {
	roots := []string{"/sys/fs/cgroup"}
	if entries, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", e.Name(), "cgroup.procs")); err == nil {
					roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
				}
			}
		}
	}
	return roots
}

// removeEmptyTree removes dir and its sub-cgroups, deepest first (rmdir fails on
// a cgroup that still has processes: it is then left and reported).
func removeEmptyTree(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			removeEmptyTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = unix.Rmdir(dir)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

type proc struct {
	pid  int
	cmd  string
	ours bool // in our cgroup parent or running a binary of our work dir: safe to kill
}

// processesOf lists the processes that belong to this run: in a cgroup under
// parent, or with dir in their command line, root or working directory (monitors
// name their state directory; containers' roots are under it). We ourselves and
// our ancestors are skipped.
func processesOf(dir, parent string) []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	skip := ancestors()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || skip[pid] || !alive(pid) {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		inParent := false
		for _, line := range strings.Split(string(cg), "\n") {
			if i := strings.LastIndexByte(line, ':'); i >= 0 {
				p := line[i+1:]
				if p == parent || strings.HasPrefix(p, parent+"/") {
					inParent = true
				}
			}
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if inParent || strings.Contains(cmd, dir) || strings.HasPrefix(root, dir) || strings.HasPrefix(cwd, dir) {
			if cmd == "" {
				cmd = "[" + exeName(pid) + "]"
			}
			out = append(out, proc{pid, cmd, inParent || strings.HasPrefix(exe, dir+"/") || strings.HasPrefix(root, dir+"/")})
		}
	}
	return out
}

// ancestors are this process and its parents up to pid 1.
func ancestors() map[int]bool {
	out := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !out[pid]; {
		out[pid] = true
		f, err := statFields(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			break
		}
		if pid, err = strconv.Atoi(f[1]); err != nil {
			break
		}
	}
	return out
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// sleepCtx sleeps d or until ctx is done; false if it is.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// hostCPU returns the machine's busy and total CPU time in clock ticks, all CPUs
// (/proc/stat: busy is everything but idle and iowait).
func hostCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line := strings.SplitN(string(b), "\n", 2)[0]
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		if i >= 8 { // guest and guest_nice are in user and nice already
			break
		}
		x, _ := strconv.ParseInt(v, 10, 64)
		total += x
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
	}
	return busy, total
}

// cpuWindow is what the machine and agentd spent over a span of time.
type cpuWindow struct {
	hostBusy, hostTotal int64 // ticks, all CPUs
	agentd              int64 // ticks
}

func startCPUWindow(agentdPid int) cpuWindow {
	var w cpuWindow
	w.hostBusy, w.hostTotal = hostCPU()
	w.agentd, _ = cpuTicks(agentdPid)
	return w
}

// end returns the differences since w; agentd's is 0 when it cannot be read
// (it exited).
func (w cpuWindow) end(agentdPid int) cpuWindow {
	b, t := hostCPU()
	a, err := cpuTicks(agentdPid)
	if err != nil {
		a = w.agentd
	}
	return cpuWindow{hostBusy: b - w.hostBusy, hostTotal: t - w.hostTotal, agentd: a - w.agentd}
}

func (w cpuWindow) String() string {
	if w.hostTotal <= 0 {
		return "?"
	}
	return fmt.Sprintf("machine %.0f %% busy (%.1f CPU-s of %.1f), agentd itself %.2f CPU-s",
		float64(w.hostBusy)/float64(w.hostTotal)*100, float64(w.hostBusy)/clockTicks, float64(w.hostTotal)/clockTicks, float64(w.agentd)/clockTicks)
}
