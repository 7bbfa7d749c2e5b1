package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// containerCommand prints "ready", then waits; TERM ends it at once. sh runs a
// trap only between commands, so `sleep` goes to the background and sh waits
// with the `wait` builtin, which a trapped signal interrupts.
const containerCommand = `trap 'exit 0' TERM; echo ready; sleep 3600 & wait`

// testImage is the imported test image (benchutil.ImportImage).
const testImage = "localhost/busybox:latest"

func podManifest(name string, grace int) string {
	return podManifestImage(name, grace, testImage, corev1.PullNever)
}

// podManifestImage is podManifest with another image and pull policy.
func podManifestImage(name string, grace int, image string, policy corev1.PullPolicy) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: %d
  containers:
  - name: main
    image: %s
    imagePullPolicy: %s
    command: ["sh", "-c", %q]
`, name, grace, image, policy, containerCommand)
}

// podRunning says whether the pod is Running with every container running.
func podRunning(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	if len(p.Status.ContainerStatuses) != len(p.Spec.Containers) {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return false
		}
	}
	return true
}

// podSummary counts pods by kubectl-style status, for error messages.
func podSummary(pods []corev1.Pod, prefix string) string {
	counts := map[string]int{}
	for _, p := range pods {
		if !strings.HasPrefix(p.Name, prefix) {
			continue
		}
		s := string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Waiting != nil {
				s += "/" + cs.State.Waiting.Reason
			} else if cs.State.Terminated != nil {
				s += "/" + cs.State.Terminated.Reason
			}
		}
		if podRunning(&p) {
			s = "Running(all containers)"
		}
		counts[s]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, counts[k])
	}
	return strings.TrimSpace(b.String())
}

func (e *env) pods(ctx context.Context) ([]corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return e.client.Pods(ctx)
}

// checkNetwork fails when the pod gets no IP in the pod subnet: agentd then
// runs without pod networking (CNI plugins or iptables missing), and would be
// measured without the network's cost.
func (e *env) checkNetwork(ctx context.Context, name string) error {
	subnet := netip.MustParsePrefix(e.subnet)
	ip := ""
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		pods, _ := e.pods(ctx)
		for _, p := range pods {
			if p.Name == name {
				ip = p.Status.PodIP
			}
		}
		if ip != "" {
			break
		}
	}
	if a, err := netip.ParseAddr(ip); err != nil || !subnet.Contains(a) {
		return fmt.Errorf("pod %s has IP %q, not one of %s: agentd runs without pod networking (run `sudo hack/install-deps.sh`)\n%s",
			name, ip, e.subnet, e.LogTail(20))
	}
	return nil
}

// ---- 1. manifest written -> container output

type latResult struct {
	warm   []time.Duration // unmeasured first pods
	detect []time.Duration // manifest write started -> "ready" seen in the log file
	stamp  []time.Duration // manifest write started -> the log record's timestamp (the monitor read the line)
	remove []time.Duration // manifest removed -> pod gone from the API
}

// measureLatency writes one pod at a time, waits for its output, then removes its
// manifest and waits until the pod is gone before the next. Pod i is named
// prefix-<i> and runs image(i) with policy.
func measureLatency(ctx context.Context, e *env, warmup, n int, prefix string, image func(i int) string, policy corev1.PullPolicy) (*latResult, error) {
	w, err := newLogWaiter(e.logDir)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	res := &latResult{}
	for i := 0; i < warmup+n; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("%s-%02d", prefix, i)
		file := name + ".yaml"
		content := podManifestImage(name, e.o.grace, image(i), policy)
		t0 := time.Now()
		if err := e.write(file, content); err != nil {
			return nil, err
		}
		seen, path, err := w.wait(ctx, name, "main", "ready", t0.Add(30*time.Second), e.CheckAlive)
		if err != nil {
			pods, _ := e.pods(ctx)
			return nil, fmt.Errorf("pod %s: %w; pods: %s\n%s", name, err, podSummary(pods, prefix+"-"), e.LogTail(20))
		}
		d := seen.Sub(t0)
		stamp, serr := recordTime(path, "ready")
		if i < warmup {
			res.warm = append(res.warm, d)
		} else {
			res.detect = append(res.detect, d)
			if serr == nil {
				res.stamp = append(res.stamp, stamp.Sub(t0))
			}
		}
		if i == 0 {
			if err := e.checkNetwork(ctx, name); err != nil {
				return nil, err
			}
		}

		t1 := time.Now()
		if err := os.Remove(filepath.Join(e.manifests, file)); err != nil {
			return nil, err
		}
		gone := false
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
			pods, err := e.pods(ctx)
			if err == nil {
				gone = true
				for _, p := range pods {
					if p.Name == name {
						gone = false
					}
				}
			}
			if gone {
				break
			}
			if err := e.CheckAlive(); err != nil {
				return nil, err
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !gone {
			return nil, fmt.Errorf("pod %s still listed 30 s after its manifest was removed\n%s", name, e.LogTail(20))
		}
		if i >= warmup {
			res.remove = append(res.remove, time.Since(t1))
		}
	}
	return res, nil
}

// ---- 2. n manifests at once -> all Running

type burstResult struct {
	n             int
	write         time.Duration   // writing the n manifests (temp + rename each)
	all           time.Duration   // write started -> the API shows all n Running, every container running
	running       []time.Duration // per pod: write started -> first poll that showed it Running
	logged        time.Duration   // write started -> the last pod's "ready" record (log timestamps)
	polls         int
	pollEvery     time.Duration
	firstListing  time.Duration // write started -> first poll that listed all n (any phase)
	apiCallMedian time.Duration // median duration of one GET /pods during the burst
	cpu           cpuWindow
}

func measureBurst(ctx context.Context, e *env, n int) (*burstResult, error) {
	res := &burstResult{n: n, pollEvery: e.o.poll}
	names := make([]string, n)
	contents := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("burst-%03d", i)
		contents[i] = podManifest(names[i], e.o.grace)
	}
	cw := startCPUWindow(e.Pid())
	t0 := time.Now()
	tmps := make([]string, n)
	for i, name := range names {
		tmps[i] = filepath.Join(e.manifests, "."+name+".yaml.tmp")
		if err := os.WriteFile(tmps[i], []byte(contents[i]), 0o644); err != nil {
			return nil, err
		}
	}
	for i, name := range names {
		if err := os.Rename(tmps[i], filepath.Join(e.manifests, name+".yaml")); err != nil {
			return nil, err
		}
	}
	res.write = time.Since(t0)

	seenRunning := map[string]time.Duration{}
	var calls []time.Duration
	var last []corev1.Pod
	deadline := t0.Add(e.o.burstTimeout)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c0 := time.Now()
		pods, err := e.pods(ctx)
		now := time.Now()
		calls = append(calls, now.Sub(c0))
		res.polls++
		if err == nil {
			last = pods
			listed, running := 0, 0
			for i := range pods {
				p := &pods[i]
				if !strings.HasPrefix(p.Name, "burst-") {
					continue
				}
				listed++
				if podRunning(p) {
					running++
					if _, ok := seenRunning[p.Name]; !ok {
						seenRunning[p.Name] = now.Sub(t0)
					}
				}
			}
			if listed == n && res.firstListing == 0 {
				res.firstListing = now.Sub(t0)
			}
			if running == n {
				res.all = now.Sub(t0)
				res.cpu = cw.end(e.Pid())
				break
			}
		}
		if err := e.CheckAlive(); err != nil {
			return nil, err
		}
		if now.After(deadline) {
			return nil, fmt.Errorf("after %v: %d of %d pods Running; pods: %s (last error: %v)\n%s",
				e.o.burstTimeout, len(seenRunning), n, podSummary(last, "burst-"), err, e.LogTail(20))
		}
		time.Sleep(e.o.poll)
	}
	for _, d := range seenRunning {
		res.running = append(res.running, d)
	}
	sort.Slice(res.running, func(i, j int) bool { return res.running[i] < res.running[j] })
	sort.Slice(calls, func(i, j int) bool { return calls[i] < calls[j] })
	res.apiCallMedian = calls[len(calls)/2]

	// Running means the container's process started; its first line reaches the
	// log a moment later. Wait for all of them (not part of the time above).
	var errs []error
	for _, name := range names {
		var ts time.Time
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; {
			logs, _ := filepath.Glob(filepath.Join(e.logDir, "*_"+name+"_*", "main", "0.log"))
			if len(logs) == 1 {
				if ts, err = recordTime(logs[0], "ready"); err == nil {
					break
				}
			} else {
				err = fmt.Errorf("%s: %d log files", name, len(logs))
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.logged = max(res.logged, ts.Sub(t0))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d pod(s) Running without \"ready\" in their log 10 s later: %w", len(errs), errors.Join(errs...))
	}
	return res, nil
}

// ---- 3. idle CPU with n pods

type idleResult struct {
	window      time.Duration
	agentdTicks int64
	agentdCtxSw int64
	agentdMem   benchutil.MemStat
	monitors    int
	monTicks    int64
	monPss      int64 // kB, summed
	monRss      int64
	monThreads  int
	monExes     map[string]int
	loadBefore  string
	loadAfter   string
}

func (r *idleResult) pct(ticks int64) float64 {
	return float64(ticks) / benchutil.ClockTicks / r.window.Seconds() * 100
}

func measureIdle(ctx context.Context, e *env, want int) (*idleResult, error) {
	if !benchutil.SleepCtx(ctx, e.o.settle) {
		return nil, ctx.Err()
	}
	mons := benchutil.MonitorPids(e.bin)
	if len(mons) != want {
		return nil, fmt.Errorf("%d agent-monitor processes running from %s, want %d", len(mons), e.bin, want)
	}
	res := &idleResult{monitors: len(mons), monExes: map[string]int{}, loadBefore: benchutil.LoadAvg()}
	pid := e.Pid()
	a0, err := benchutil.CPUTicks(pid)
	if err != nil {
		return nil, err
	}
	cs0 := benchutil.CtxSwitches(pid)
	m0 := map[int]int64{}
	for _, p := range mons {
		if m0[p], err = benchutil.CPUTicks(p); err != nil {
			return nil, fmt.Errorf("monitor pid %d: %w", p, err)
		}
	}
	t0 := time.Now()
	if !benchutil.SleepCtx(ctx, e.o.idle) {
		return nil, ctx.Err()
	}
	if err := e.CheckAlive(); err != nil {
		return nil, fmt.Errorf("during the idle window: %w", err)
	}
	a1, err := benchutil.CPUTicks(pid)
	if err != nil {
		return nil, fmt.Errorf("agentd: %w", err)
	}
	cs1 := benchutil.CtxSwitches(pid)
	var mt int64
	for _, p := range mons {
		t, err := benchutil.CPUTicks(p)
		if err != nil {
			return nil, fmt.Errorf("monitor pid %d gone during the idle window: %w", p, err)
		}
		mt += t - m0[p]
	}
	res.window = time.Since(t0)
	res.agentdTicks, res.agentdCtxSw, res.monTicks = a1-a0, cs1-cs0, mt
	res.loadAfter = benchutil.LoadAvg()
	for _, p := range mons {
		m, err := benchutil.ReadMem(p)
		if err != nil {
			return nil, fmt.Errorf("monitor pid %d: %w", p, err)
		}
		res.monPss += m.Pss
		res.monRss += m.Rss
		res.monThreads += m.Threads
		res.monExes[benchutil.ExeName(p)]++
	}
	res.agentdMem, _ = benchutil.ReadMem(pid)
	return res, nil
}

// ---- 4. stop

type stopResult struct {
	pods        int
	agentdExit  time.Duration // SIGTERM -> agentd exited
	monitorsEnd time.Duration // SIGTERM -> no thread of any monitor left
	monitorsOut int           // monitors still running when agentd had exited
	cpu         cpuWindow     // SIGTERM -> agentd exited (agentd's own ticks not readable after its exit)
}

func measureStop(ctx context.Context, e *env, pods int) (*stopResult, error) {
	mons := benchutil.MonitorPids(e.bin)
	res := &stopResult{pods: pods}
	done := make(chan time.Duration, 1)
	t0 := time.Now()
	go func() {
		for {
			left := 0
			for _, p := range mons {
				if !benchutil.NoThreadLeft(p) {
					left++
				}
			}
			if left == 0 {
				done <- time.Since(t0)
				return
			}
			if time.Since(t0) > 90*time.Second {
				done <- -1
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	cw := startCPUWindow(e.Pid())
	took, err := e.Stop(60 * time.Second)
	res.cpu = cw.end(0)
	res.agentdExit = took
	for _, p := range mons {
		if !benchutil.NoThreadLeft(p) {
			res.monitorsOut++
		}
	}
	res.monitorsEnd = <-done
	if err != nil {
		return res, err
	}
	if res.monitorsEnd < 0 {
		return res, fmt.Errorf("monitors still running 90 s after SIGTERM")
	}
	return res, nil
}
