package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// level is one pod count: how its pods started and how its restores went.
type level struct {
	n          int // pods measured (fewer than asked for when the budget did not allow more)
	batches    []batch
	monitors   int
	pssKB      int64
	agentdPSS  int64 // kB, after the last restore
	runs       []*restoreRun
	quiet      float64 // CPU busy % with the pods idle, before the restores
	sampled    map[string]int
	profiled   bool
	goBench    []string // result lines of go test -bench RootRestore ./agent/runtime
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
	logRunning  time.Duration // exec -> timestamp of "agentd is running" (b); 0 without that line
	firstAdopt  time.Duration // exec -> first "Adopted pod" line; 0 without such lines
	lastAdopt   time.Duration // exec -> last "Adopted pod" line
	adoptLines  int
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
		c0 := benchutil.ReadCPUStat()
		stopSampling := sampleProcesses(lv, e.Pid())
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
			if err := e.CheckAlive(); err != nil {
				stopSampling()
				return err
			}
			s, err := e.api.pods(ctx)
			if err == nil && s.total == to && len(s.running) == to {
				if from == 0 {
					if err := e.checkNetwork(s); err != nil {
						stopSampling()
						return err
					}
				}
				break
			}
			if err != nil {
				last = err.Error()
			} else {
				last = fmt.Sprintf("%d listed, %d Running", s.total, len(s.running))
			}
			if time.Since(t0) > timeout {
				stopSampling()
				return fmt.Errorf("pods %d..%d not all Running after %s: %s\n%s", from+1, to, timeout.Round(time.Second), last, e.LogTail(10))
			}
			time.Sleep(interval)
		}
		b := batch{from: from, to: to, took: time.Since(t0)}
		stopSampling()
		b.cpu = benchutil.ReadCPUStat().SplitSince(c0)
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
	lv.quiet = quiesce(ctx, 30*time.Second)
	logf("%d pods: CPU busy %.0f%% (1 s window) after waiting for the start to settle", lv.n, lv.quiet)
	pids := benchutil.MonitorPids(e.bin)
	lv.monitors = len(pids)
	for _, pid := range pids {
		lv.pssKB += pss(pid)
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
		logf("restore %d/%d of %d pods: (a) API lists all adopted %s = %.2f u, (b) \"agentd is running\" %s; first/last \"Adopted pod\" %s/%s; agentd CPU %s; stop %s; CPU busy before %.0f%%, load %.2f",
			i+1, e.o.reps, lv.n, ms(r.adopted), rep.u.Of(r.adopted), ms(r.logRunning), ms(r.firstAdopt), ms(r.lastAdopt), ms(r.cpu), ms(r.stop), r.busy, r.load1)
	}
	if e.Running() {
		lv.agentdPSS = pss(e.Pid())
	}
	tu, _ := target(lv.n)
	med := benchutil.Median(lv.runs, func(r *restoreRun) time.Duration { return r.adopted })
	if e.o.profile == "always" || e.o.profile == "auto" && rep.u.Of(med) > tu {
		if time.Until(deadline) < rep.cleanupEstimate(lv.n)+profileEstimate {
			note := fmt.Sprintf("%d pods: no profile (not enough of the budget left)", lv.n)
			logf("%s", note)
			rep.notes = append(rep.notes, note)
			return nil
		}
		lv.profiled = true
		logf("profiling the restore of %d pods (median %.2f u, target %g u)", lv.n, rep.u.Of(med), tu)
		lv.goBench, lv.perf, lv.profileErr = profile(ctx, e, lv.n, before)
		if lv.profileErr != nil {
			logf("profile: %v", lv.profileErr)
		}
		if !e.Running() { // profile restarts agentd; make sure it did
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
	if r.stop, err = e.Stop(60 * time.Second); err != nil {
		return nil, err
	}
	e.api.hc.CloseIdleConnections()
	c0 := benchutil.ReadCPUStat()
	select {
	case <-time.After(e.o.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r.busy = benchutil.ReadCPUStat().BusySince(c0)
	r.load1, r.foreign = benchutil.Load1(), foreignMonitors(e.base)
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
		if err := e.CheckAlive(); err != nil {
			return nil, err
		}
		if time.Since(t0) > e.o.restoreTimeout {
			return nil, fmt.Errorf("no adopted pod list within %v: %s\n%s", e.o.restoreTimeout, last, e.LogTail(20))
		}
		body, err := e.api.get(ctx, "/api/v1/pods")
		if err != nil {
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
		r.cpu = benchutil.CPUTime(e.Pid())
	}
	// agentd serves the API by now: its "running" line, if it logs one, is written.
	if tr, ok := e.logTime("agentd is running", 2*time.Second); ok {
		r.logRunning = tr.Sub(t0)
	}
	for _, l := range e.readLog() {
		if l.Msg == "Adopted pod" {
			if r.adoptLines == 0 {
				r.firstAdopt = l.Time.Sub(t0)
			}
			r.lastAdopt = l.Time.Sub(t0)
			r.adoptLines++
		}
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

var ms = benchutil.Dur

// checkNetwork fails when a pod has no IP in the pod subnet: agentd then runs
// without pod networking (CNI plugins or iptables missing), and its restore
// would be measured without the network's part.
func (e *env) checkNetwork(s *snapshot) error {
	subnet := netip.MustParsePrefix(e.subnet)
	for name, ip := range s.podIPs {
		if a, err := netip.ParseAddr(ip); err != nil || !subnet.Contains(a) {
			return fmt.Errorf("pod %s has IP %q, not one of %s: agentd runs without pod networking (run `sudo hack/install-deps.sh`)\n%s",
				name, ip, e.subnet, e.LogTail(20))
		}
	}
	return nil
}

// pss is a process's proportional set size (smaps_rollup), in kB; 0 when unreadable.
func pss(pid int) int64 {
	m, _ := benchutil.ReadMem(pid)
	return m.Pss
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

// quiesce waits (at most max) for a 1-second window with the CPUs less than 30 %
// busy, or one no busier than the one before; it returns the last window's busy %.
func quiesce(ctx context.Context, max time.Duration) float64 {
	deadline := time.Now().Add(max)
	prev := 101.0
	for {
		c0 := benchutil.ReadCPUStat()
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return 0
		}
		busy := benchutil.ReadCPUStat().BusySince(c0)
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
