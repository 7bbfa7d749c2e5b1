package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/network"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/source"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// listProfile replays, in this process and while agentd is stopped, the steps
// agentd takes before it serves its API with live restore on (agent.New, then
// restore: runtime.List, which inspects every monitor one after the other, and a
// pod record per pod), timing each; and the same inspection in parallel.
type listProfile struct {
	monitors  int
	execFloor time.Duration // fork+exec+Go start of `agentd --version` (median of 5)
	netNew    time.Duration // network.New: runs the bridge and host-local plugins' VERSION
	imageOpen time.Duration
	fsync     time.Duration // an atomic write of a small JSON file, as restore's saveState
	list      time.Duration // runtime.List, sequential as agentd does it (median of 3)
	// runtime.Inspect's steps summed over all monitors, sequentially:
	readConfig, readJournal, alive, connect, hello time.Duration
	loadPods                                       time.Duration // read + decode every <run-dir>/pods/<uid>/pod.json
	source                                         time.Duration // source.Run's first snapshot (after the API listens)
	parallel                                       map[int]time.Duration
	journalOnly                                    time.Duration // read journal + /proc check per monitor, nothing else
	notAlive                                       int
}

func profile(ctx context.Context, e *env, before *snapshot) (*listProfile, *perfResult, error) {
	if _, err := e.Stop(60 * time.Second); err != nil {
		return nil, nil, err
	}
	time.Sleep(e.o.settle)
	lp, err := inProcess(ctx, e)
	if err != nil {
		return lp, nil, err
	}
	pr, err := perfRestore(ctx, e, before)
	return lp, pr, err
}

func inProcess(ctx context.Context, e *env) (*listProfile, error) {
	lp := &listProfile{parallel: map[int]time.Duration{}}
	var floor []time.Duration
	for i := 0; i < 5; i++ {
		t := time.Now()
		if err := exec.Command(filepath.Join(e.bin, "agentd"), "--version").Run(); err != nil {
			return nil, err
		}
		floor = append(floor, time.Since(t))
	}
	lp.execFloor = benchutil.Median(floor, func(d time.Duration) time.Duration { return d })

	t := time.Now()
	if _, err := network.New(network.Config{Bridge: e.bridge, Subnet: e.subnet, StateDir: filepath.Join(e.runDir, "network"), IPMasq: true, Log: logr.Discard()}); err != nil {
		return nil, fmt.Errorf("network.New: %w", err)
	}
	lp.netNew = time.Since(t)
	t = time.Now()
	if _, err := image.Open(filepath.Join(e.root, "images")); err != nil {
		return nil, fmt.Errorf("image.Open: %w", err)
	}
	lp.imageOpen = time.Since(t)
	t = time.Now()
	if err := protocol.WriteConfig(e.base, &protocol.ContainerConfig{ID: "fsync-probe", StateRoot: e.runDir}); err != nil {
		return nil, err
	}
	lp.fsync = time.Since(t)
	_ = os.Remove(filepath.Join(e.base, protocol.ConfigFile))

	rt, err := runtime.New(runtime.Config{
		Settings:    runtime.Settings{RunDir: e.runDir, LogDir: e.logDir, CgroupParent: e.parent, NodeName: nodeName},
		Root:        e.root,
		MonitorPath: filepath.Join(e.bin, "agent-monitor"),
	}, logr.Discard())
	if err != nil {
		return nil, err
	}
	var lists []time.Duration
	for i := 0; i < 3; i++ {
		t := time.Now()
		ms, err := rt.List(ctx)
		if err != nil {
			return nil, err
		}
		lists = append(lists, time.Since(t))
		lp.monitors, lp.notAlive = len(ms), 0
		for _, m := range ms {
			if m.State != runtime.MonitorAlive {
				lp.notAlive++
			}
		}
	}
	lp.list = benchutil.Median(lists, func(d time.Duration) time.Duration { return d })

	// Inspect's steps, one monitor after the other.
	monDir := filepath.Join(e.runDir, "monitors")
	ents, err := os.ReadDir(monDir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, d := range ents {
		if d.IsDir() {
			ids = append(ids, d.Name())
		}
	}
	for _, id := range ids {
		dir := filepath.Join(monDir, id)
		t0 := time.Now()
		if _, err := protocol.ReadConfig(dir); err != nil {
			return nil, err
		}
		t1 := time.Now()
		j, err := protocol.ReadJournal(dir)
		if err != nil {
			return nil, err
		}
		t2 := time.Now()
		protocol.ProcessAlive(j.MonitorPid, j.MonitorStart)
		t3 := time.Now()
		connect, hello, err := handshake(dir)
		if err != nil {
			return nil, fmt.Errorf("monitor %s: %w", id, err)
		}
		lp.readConfig += t1.Sub(t0)
		lp.readJournal += t2.Sub(t1)
		lp.alive += t3.Sub(t2)
		lp.connect += connect
		lp.hello += hello
	}

	// What verifying a monitor from its journal alone would cost (the monitor
	// records pid and start time; the protocol version could be recorded too).
	t = time.Now()
	for _, id := range ids {
		dir := filepath.Join(monDir, id)
		j, err := protocol.ReadJournal(dir)
		if err != nil {
			return nil, err
		}
		if !protocol.ProcessAlive(j.MonitorPid, j.MonitorStart) {
			return nil, fmt.Errorf("monitor %s: pid %d gone", id, j.MonitorPid)
		}
	}
	lp.journalOnly = time.Since(t)

	// What restore does per pod besides the monitors: its record.
	podDirs, _ := os.ReadDir(filepath.Join(e.runDir, "pods"))
	t = time.Now()
	for _, d := range podDirs {
		b, err := os.ReadFile(filepath.Join(e.runDir, "pods", d.Name(), "pod.json"))
		if err != nil {
			continue
		}
		var sp struct {
			Pod     *corev1.Pod      `json:"pod"`
			Sandbox *runtime.Sandbox `json:"sandbox"`
			Started time.Time        `json:"started"`
		}
		if err := json.Unmarshal(b, &sp); err != nil {
			return nil, err
		}
	}
	lp.loadPods = time.Since(t)

	// After the API listens, the manifest source parses every manifest while the
	// first requests are served.
	sctx, cancel := context.WithCancel(ctx)
	snaps := make(chan source.Snapshot, 1)
	t = time.Now()
	go func() {
		_ = source.Run(sctx, source.Config{Dir: e.manifests, NodeName: nodeName, Relist: time.Hour, Log: logr.Discard()}, snaps)
	}()
	select {
	case <-snaps:
		lp.source = time.Since(t)
	case <-time.After(30 * time.Second):
	}
	cancel()

	// The same inspections with a bounded number of workers.
	for _, w := range []int{4, 16, 64} {
		var runs []time.Duration
		for i := 0; i < 3; i++ {
			t := time.Now()
			if bad := parallelInspect(ctx, rt, ids, w); bad > 0 {
				return nil, fmt.Errorf("%d monitors not Alive in a parallel inspection", bad)
			}
			runs = append(runs, time.Since(t))
		}
		lp.parallel[w] = benchutil.Median(runs, func(d time.Duration) time.Duration { return d })
	}
	return lp, nil
}

// handshake does what runtime.dial does: connect, hello, read the reply.
func handshake(dir string) (connect, hello time.Duration, err error) {
	t0 := time.Now()
	path, done, err := protocol.SocketAddr(dir)
	if err != nil {
		return 0, 0, err
	}
	defer done()
	c, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t1 := time.Now()
	data, _ := json.Marshal(&protocol.Hello{Protocol: protocol.Name, Major: protocol.Major, Minor: protocol.Minor})
	if _, err := c.Write(append(data, '\n')); err != nil {
		return 0, 0, err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return 0, 0, err
	}
	var reply protocol.HelloReply
	if err := json.Unmarshal(line, &reply); err != nil {
		return 0, 0, err
	}
	return t1.Sub(t0), time.Since(t1), nil
}

func parallelInspect(ctx context.Context, rt *runtime.Runtime, ids []string, workers int) (notAlive int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	ch := make(chan string)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ch {
				if m := rt.Inspect(ctx, id); m.State != runtime.MonitorAlive {
					mu.Lock()
					notAlive++
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		ch <- id
	}
	close(ch)
	wg.Wait()
	return notAlive
}

// perfResult is a CPU profile of one restore by an unstripped agentd.
type perfResult struct {
	run       *restoreRun
	self      []string // top symbols by self time
	children  []string // top agentd functions by inclusive time
	samples   string
	buildTook time.Duration
}

// perfRestore builds agentd with its symbols (the Makefile strips them) beside
// copies of the monitors (agentd finds them beside itself), runs one restore
// under `perf record -g`, and starts the normal agentd again.
func perfRestore(ctx context.Context, e *env, before *snapshot) (*perfResult, error) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil, errNoPerf
	}
	pr := &perfResult{}
	dir := filepath.Join(e.base, "profbin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-X github.com/agentd-project/agentd/agent/version.Version="+e.version,
		"-o", filepath.Join(dir, "agentd"), "./cmd/agentd")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/agentd (run from the module's root): %w: %s", err, out)
	}
	pr.buildTook = time.Since(t)
	for _, b := range []string{"agent-monitor", "agent-monitor-lean"} {
		if err := benchutil.CopyFile(filepath.Join(e.bin, b), filepath.Join(dir, b), 0o755); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(e.base, "perf.data")
	argv := []string{perf, "record", "-q", "-F", "4999", "-g", "-o", data, "--", filepath.Join(dir, "agentd")}
	r, err := e.restoreOnceUnder(ctx, before, argv)
	if err != nil {
		return nil, err
	}
	pr.run = r
	pr.self, pr.samples = perfReport(perf, data, "--no-children", 1.0, 18, nil)
	pr.children, _ = perfReport(perf, data, "--children", 2.0, 30, func(sym string) bool {
		for _, s := range []string{"agentd-project/agentd/agent", "encoding/json.Unmarshal", "encoding/json.Marshal",
			"runtime.gcBgMarkWorker", "os/exec.(*Cmd).Start", "syscall.Syscall", "sigs.k8s.io/yaml", "runtime.mallocgc "} {
			if strings.Contains(sym, s) {
				return true
			}
		}
		return false
	})
	return pr, nil
}

// restoreOnceUnder is restoreOnce with agentd run by a wrapper (perf): agentd is
// the wrapper's child; it is stopped with SIGTERM, the wrapper then exits, and the
// normal agentd is started again.
func (e *env) restoreOnceUnder(ctx context.Context, before *snapshot, argv []string) (*restoreRun, error) {
	r, err := e.restoreOnce(ctx, before, "perf", argv...)
	if err != nil {
		e.stopWrapped()
		return nil, err
	}
	e.stopWrapped()
	if _, err := e.start(ctx, "after-perf"); err != nil {
		return r, err
	}
	return r, nil
}

// stopWrapped stops the wrapped agentd (the wrapper's child) and waits for the wrapper.
func (e *env) stopWrapped() {
	if !e.Running() {
		return
	}
	pid := e.Pid()
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if f := strings.Fields(string(b)); len(f) > 0 {
		if child, err := strconv.Atoi(f[0]); err == nil {
			_ = syscall.Kill(child, syscall.SIGTERM)
		}
	} else {
		_ = e.Signal(syscall.SIGTERM)
	}
	select {
	case <-e.Exited():
	case <-time.After(60 * time.Second):
		e.Kill()
	}
}

// perfReport returns the top lines of `perf report` sorted by symbol.
func perfReport(perf, data, mode string, limit float64, n int, keep func(string) bool) ([]string, string) {
	out, err := exec.Command(perf, "report", "-i", data, "--stdio", mode, "--sort", "symbol", "-g", "none",
		"--percent-limit", strconv.FormatFloat(limit, 'f', 1, 64)).Output()
	if err != nil {
		return []string{"perf report: " + err.Error()}, ""
	}
	var lines []string
	samples := ""
	for _, l := range strings.Split(string(out), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "# Samples:") {
			samples = strings.TrimPrefix(t, "# ")
		}
		if t == "" || strings.HasPrefix(t, "#") || !strings.Contains(t, "%") {
			continue
		}
		if keep != nil && !keep(t) {
			continue
		}
		lines = append(lines, strings.TrimSuffix(strings.Join(strings.Fields(t), " "), " - -"))
	}
	sort.SliceStable(lines, func(i, j int) bool { return pct(lines[i]) > pct(lines[j]) })
	if len(lines) > n {
		lines = lines[:n]
	}
	return lines, samples
}

func pct(line string) float64 {
	f := strings.Fields(line)
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
	return v
}
