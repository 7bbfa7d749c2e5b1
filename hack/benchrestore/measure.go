package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// level is one pod count: how its pods started and how its restores went.
type level struct {
	want, n    int // asked for, measured
	batches    []batch
	monitors   int
	pssKB      int64
	agentdPSS  int64 // kB, after the last restore
	before     *snapshot
	runs       []*restoreRun
	quiet      float64 // CPU busy % with the pods idle, before the restores
	sampled    map[string]int
	cpuSplit   string
	profiled   bool
	inproc     *listProfile
	perf       *perfResult
	profileErr error
	err        error
}

type batch struct {
	from, to int
	took     time.Duration
	cpu      string // user/sys/idle split during the batch
}

// restoreRun is one stop + start of agentd.
type restoreRun struct {
	stop        time.Duration // SIGTERM -> agentd exited (live restore on)
	firstAnswer time.Duration // exec -> first answer of GET /api/v1/pods
	adopted     time.Duration // exec -> an answer (fully read) with every pod Running, same containers (a)
	decode      time.Duration // of which: our client's decoding of that answer
	logRunning  time.Duration // exec -> timestamp of "agentd is running" (b)
	firstAdopt  time.Duration // exec -> first "Adopted pod" line
	lastAdopt   time.Duration // exec -> last "Adopted pod" line
	adoptLines  int
	polls       int           // failed connection attempts before the API answered
	cpu         time.Duration // agentd's CPU time when (a) held
	warmList    time.Duration // a GET /api/v1/pods once agentd runs (median of 3)
	load1       float64       // load average just before the exec
	busy        float64       // CPU busy (all CPUs, %) during the pause before the exec
	foreign     int           // agent-monitor processes not ours (other agentds on the machine)
}

func (b batch) String() string {
	return fmt.Sprintf("pods %d..%d in %s", b.from+1, b.to, b.took.Round(10*time.Millisecond))
}

// fill writes manifests in batches until lv.n pods run; each batch is written at
// once and waited for (all its pods Running and ready in the API).
func (e *env) fill(ctx context.Context, lv *level, rep *report, deadline time.Time) error {
	for e.pods < lv.n {
		to := min(e.pods+e.o.batch, lv.n)
		from := e.pods
		if !e.o.skipBudgetChecks && len(rep.allBatches()) > 0 {
			proj := rep.project(from, lv.n)
			if left := time.Until(deadline); proj > left {
				note := fmt.Sprintf("stopped starting pods at %d of %d: the rest would need about %s (start at the last batch's rate, restores, clean-up) but %s are left",
					from, lv.n, proj.Round(time.Second), left.Round(time.Second))
				logf("%s", note)
				rep.notes = append(rep.notes, note)
				lv.n = from
				return nil
			}
		}
		t0 := time.Now()
		c0 := readCPU()
		stopSampling := sampleProcesses(lv, e.cmd.Process.Pid)
		if err := e.writePods(from, to); err != nil {
			stopSampling()
			return err
		}
		interval := 250 * time.Millisecond
		if to > 200 {
			interval = time.Second // a list of many pods costs agentd CPU: do not steal it from the start
		}
		timeout := min(5*time.Minute, time.Until(deadline))
		last := ""
		for {
			if ctx.Err() != nil {
				stopSampling()
				return ctx.Err()
			}
			if !e.running() {
				stopSampling()
				return fmt.Errorf("agentd exited: %v\n%s", e.exitErr, e.logTail(20))
			}
			s, err := e.api.pods(ctx)
			if err == nil && s.total == to && len(s.running) == to {
				break
			}
			if err != nil {
				last = err.Error()
			} else {
				last = fmt.Sprintf("%d listed, %d Running", s.total, len(s.running))
			}
			if time.Since(t0) > timeout {
				stopSampling()
				return fmt.Errorf("pods %d..%d not all Running after %s: %s\n%s", from+1, to, timeout.Round(time.Second), last, e.logTail(10))
			}
			time.Sleep(interval)
		}
		b := batch{from: from, to: to, took: time.Since(t0)}
		stopSampling()
		b.cpu = readCPU().splitSince(c0)
		lv.batches = append(lv.batches, b)
		logf("started %s (%d Running); CPU %s", b, to, b.cpu)
	}
	return nil
}

// measureLevel restores lv.n pods o.reps times, then profiles when asked to.
func measureLevel(ctx context.Context, e *env, lv *level, rep *report, deadline time.Time) error {
	before, err := e.api.pods(ctx)
	if err != nil {
		return err
	}
	if before.total != lv.n || len(before.running) != lv.n {
		return fmt.Errorf("%d pods listed, %d Running; want %d", before.total, len(before.running), lv.n)
	}
	lv.before = before
	lv.quiet = quiesce(ctx, 30*time.Second)
	logf("%d pods: CPU busy %.0f%% (1 s window) after waiting for the start to settle", lv.n, lv.quiet)
	pids := e.monitorPids()
	lv.monitors = len(pids)
	for _, pid := range pids {
		lv.pssKB += pssKB(pid)
	}
	logf("%d pods Running, %d monitors, monitors' PSS %.1f MiB (%.0f KiB each)", lv.n, lv.monitors,
		float64(lv.pssKB)/1024, float64(lv.pssKB)/float64(max(lv.monitors, 1)))

	for i := 0; i < e.o.reps; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r, err := e.restoreOnce(ctx, before, fmt.Sprintf("restore%d-%d", lv.n, i+1))
		if err != nil {
			return fmt.Errorf("restore %d of %d pods: %w", i+1, lv.n, err)
		}
		lv.runs = append(lv.runs, r)
		logf("restore %d/%d of %d pods: (a) API lists all adopted %s, (b) \"agentd is running\" %s; first/last \"Adopted pod\" %s/%s; agentd CPU %s; stop %s; CPU busy before %.0f%%, load %.2f",
			i+1, e.o.reps, lv.n, ms(r.adopted), ms(r.logRunning), ms(r.firstAdopt), ms(r.lastAdopt), ms(r.cpu), ms(r.stop), r.busy, r.load1)
	}
	if e.running() {
		lv.agentdPSS = pssKB(e.cmd.Process.Pid)
	}
	t, _ := target(lv.n)
	med := median(lv.runs, func(r *restoreRun) time.Duration { return r.adopted })
	if e.o.profile == "always" || e.o.profile == "auto" && med > t {
		if time.Until(deadline) < rep.cleanupEstimate(lv.n)+60*time.Second {
			note := fmt.Sprintf("%d pods: no profile (not enough of the budget left)", lv.n)
			logf("%s", note)
			rep.notes = append(rep.notes, note)
			return nil
		}
		lv.profiled = true
		logf("profiling the restore of %d pods (median %s, target %s)", lv.n, ms(med), ms(t))
		lv.inproc, lv.perf, lv.profileErr = profile(ctx, e, before)
		if lv.profileErr != nil {
			logf("profile: %v", lv.profileErr)
		}
		if !e.running() { // profile restarts agentd; make sure it did
			if _, err := e.restoreOnce(ctx, before, fmt.Sprintf("after-profile%d", lv.n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// restoreOnce stops agentd (live restore on: the pods stay), execs it again and
// times the restore. agentd runs again when it returns.
func (e *env) restoreOnce(ctx context.Context, before *snapshot, label string, argv ...string) (*restoreRun, error) {
	r := &restoreRun{}
	var err error
	if r.stop, err = e.stop(60 * time.Second); err != nil {
		return nil, err
	}
	e.api.hc.CloseIdleConnections()
	c0 := readCPU()
	select {
	case <-time.After(e.o.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r.busy = readCPU().busySince(c0)
	r.load1, r.foreign = loadavg(), foreignMonitors(e.base)
	t0, err := e.exec(label, argv...)
	if err != nil {
		return nil, err
	}
	var first time.Time
	last := "no answer"
	for {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !e.running() {
			return nil, fmt.Errorf("agentd exited: %v\n%s", e.exitErr, e.logTail(20))
		}
		if time.Since(t0) > e.o.restoreTimeout {
			return nil, fmt.Errorf("no adopted pod list within %v: %s\n%s", e.o.restoreTimeout, last, e.logTail(20))
		}
		body, err := e.api.get(ctx, "/api/v1/pods")
		if err != nil {
			r.polls++
			time.Sleep(time.Millisecond)
			continue
		}
		got := time.Now()
		if first.IsZero() {
			first = got
		}
		s, err := parsePods(body)
		if err != nil {
			return nil, err
		}
		if ok, why := s.sameAs(before); ok {
			// (a) ends when the answer has arrived; our decoding of it is reported apart.
			r.firstAnswer, r.adopted, r.decode = first.Sub(t0), got.Sub(t0), time.Since(got)
			break
		} else {
			last = why
		}
	}
	if len(argv) == 0 { // under perf the pid is perf's
		r.cpu = cpuTime(e.cmd.Process.Pid)
	}
	tr, err := e.waitLog("agentd is running", 10*time.Second)
	if err != nil {
		return nil, err
	}
	r.logRunning = tr.Sub(t0)
	for _, l := range e.readLog() {
		if l.Msg == "Adopted pod" {
			if r.adoptLines == 0 {
				r.firstAdopt = l.Time.Sub(t0)
			}
			r.lastAdopt = l.Time.Sub(t0)
			r.adoptLines++
		}
	}
	if r.adoptLines != len(before.running) {
		return nil, fmt.Errorf("%d \"Adopted pod\" log lines, want %d", r.adoptLines, len(before.running))
	}
	var warm []time.Duration
	for i := 0; i < 3; i++ {
		t := time.Now()
		if _, err := e.api.get(ctx, "/api/v1/pods"); err != nil {
			return nil, err
		}
		warm = append(warm, time.Since(t))
	}
	sort.Slice(warm, func(i, j int) bool { return warm[i] < warm[j] })
	r.warmList = warm[1]
	return r, nil
}

func median[T any](xs []T, f func(T) time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(xs))
	for i, x := range xs {
		ds[i] = f(x)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	if len(ds)%2 == 1 {
		return ds[len(ds)/2]
	}
	return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// pssKB is a process's proportional set size (smaps_rollup), in kB.
func pssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// cpuTime is the CPU time of a process's live threads (schedstat: nanoseconds),
// falling back to utime+stime (clock ticks).
func cpuTime(pid int) time.Duration {
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
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

func loadavg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// foreignMonitors counts agent-monitor processes whose binary is not under base:
// other agentds on this machine share its 2 CPUs.
func foreignMonitors(base string) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink("/proc/" + d.Name() + "/exe")
		if err != nil {
			continue
		}
		if strings.HasPrefix(filepath.Base(exe), "agent-monitor") && !strings.HasPrefix(exe, base+"/") {
			n++
		}
	}
	return n
}

var errNoPerf = errors.New("perf not found")

// cpuStat is the aggregate line of /proc/stat, in ticks.
type cpuStat struct{ user, sys, idle, iowait, total int64 }

func readCPU() cpuStat {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var v []int64
	for _, s := range f[1:] {
		n, _ := strconv.ParseInt(s, 10, 64)
		v = append(v, n)
	}
	var c cpuStat
	for i, n := range v {
		c.total += n
		switch i {
		case 0, 1: // user, nice
			c.user += n
		case 2, 5, 6: // system, irq, softirq
			c.sys += n
		case 3:
			c.idle += n
		case 4:
			c.iowait += n
		}
	}
	return c
}

func (c cpuStat) busySince(o cpuStat) float64 {
	d := c.total - o.total
	if d <= 0 {
		return 0
	}
	return 100 * float64(d-(c.idle-o.idle)-(c.iowait-o.iowait)) / float64(d)
}

func (c cpuStat) splitSince(o cpuStat) string {
	d := float64(max(c.total-o.total, 1))
	return fmt.Sprintf("user %.0f%% sys %.0f%% idle %.0f%% iowait %.0f%%", 100*float64(c.user-o.user)/d,
		100*float64(c.sys-o.sys)/d, 100*float64(c.idle-o.idle)/d, 100*float64(c.iowait-o.iowait)/d)
}

// quiesce waits (at most max) for a 1-second window with the CPUs less than 30 %
// busy, or one no busier than the one before; it returns the last window's busy %.
func quiesce(ctx context.Context, max time.Duration) float64 {
	deadline := time.Now().Add(max)
	prev := 101.0
	for {
		c0 := readCPU()
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return 0
		}
		busy := readCPU().busySince(c0)
		if busy < 30 || busy >= prev-2 || time.Now().After(deadline) {
			return busy
		}
		prev = busy
	}
}

// sampleProcesses counts, every 500 ms until the returned func is called, the
// processes agentd runs (its descendants: monitor starts, CNI plugins, iptables,
// ...) by command name: what keeps the start of a batch busy.
func sampleProcesses(lv *level, agentd int) func() {
	if lv.sampled == nil {
		lv.sampled = map[string]int{}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			parent, comm := map[int]int{}, map[int]string{}
			ents, _ := os.ReadDir("/proc")
			for _, d := range ents {
				pid, err := strconv.Atoi(d.Name())
				if err != nil {
					continue
				}
				b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
				if err != nil {
					continue
				}
				s := string(b)
				lpar, rpar := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
				if lpar < 0 || rpar < lpar {
					continue
				}
				f := strings.Fields(s[rpar+1:])
				if len(f) < 2 {
					continue
				}
				ppid, _ := strconv.Atoi(f[1])
				parent[pid], comm[pid] = ppid, s[lpar+1:rpar]
			}
			for pid, c := range comm {
				for p, depth := parent[pid], 0; p > 1 && depth < 8; p, depth = parent[p], depth+1 {
					if p == agentd {
						lv.sampled[c]++
						break
					}
				}
			}
		}
	}()
	var once bool
	return func() {
		if !once {
			once = true
			close(done)
			<-finished
		}
	}
}
