// Command benchagent measures a real agentd (bin/agentd, with its own config file,
// state directory, cgroup parent, bridge and subnet) against the performance
// targets of DESIGN.md, each a ratio of u (conmon+runc's start -> first output,
// p50), which it measures first in the same run (package yardstick):
//
//  0. agentd's Go package init (GODEBUG=inittrace=1), and `agentctl version`
//     against a hello-world Go binary
//  1. manifest written -> container output: one pod at a time, p50/p90
//     1b. the same when the image must be pulled first, from go-containerregistry's
//     registry on a loopback port in this process (imagePullPolicy Always, a
//     copy of the test image with layers of its own for each pod)
//  2. 100 manifests written at once -> all Running in the API
//  3. agentd's idle CPU with those 100 pods (and the monitors' CPU and PSS)
//  4. SIGTERM (live restore off) -> agentd stopped all 100 pods
//
// It uses only the binaries, agentd's API (package api's client) and the pods'
// CRI log files; monitors are found as processes running from its copy of bin/.
//
// Run it as root through hack/bench-agent.sh (after `make build image`):
//
//	go run ./hack/benchagent [-starts 20] [-burst 100] [-idle 30s] ...
//
// Everything it creates (pods, monitors, mounts, cgroups under
// /agentd-bench-<pid>, the bridge agbench<n>, nat rules, files) is removed at the
// end, also on failure or SIGINT/SIGTERM; what was left over is reported.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
	"github.com/agentd-project/agentd/hack/internal/yardstick"
)

type options struct {
	bin, image, dir string
	conmon, runc    string
	uStarts         int
	starts, warmup  int
	pullStarts      int
	burst           int
	burstTimeout    time.Duration
	idle, settle    time.Duration
	poll            time.Duration
	grace           int
	subnet, bridge  string
	logLevel        string
	seccompDefault  bool
	saveLog         string
	timeout         time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory of agentd, agentctl, agent-monitor, agent-monitor-lean (make build)")
	flag.StringVar(&o.image, "image", "_output/busybox.tar", "busybox test image archive (make image)")
	flag.StringVar(&o.dir, "dir", "", "work directory (default: a new one under /var/tmp); removed at the end")
	flag.StringVar(&o.conmon, "conmon", "", "yardstick: conmon binary (default: from PATH)")
	flag.StringVar(&o.runc, "runc", "", "yardstick: runc binary (default: from PATH)")
	flag.IntVar(&o.uStarts, "u-starts", 15, "yardstick: measured conmon+runc starts (after one warm-up)")
	flag.IntVar(&o.starts, "starts", 20, "latency: measured pods, one at a time")
	flag.IntVar(&o.warmup, "warmup", 1, "latency: unmeasured pods first")
	flag.IntVar(&o.pullStarts, "pull-starts", 10, "latency with a pull: measured pods, one at a time, each pulling its own copy of the image (0: skip)")
	flag.IntVar(&o.burst, "burst", 100, "burst: manifests written at once (also the pods of the idle and stop measurements)")
	flag.DurationVar(&o.burstTimeout, "burst-timeout", 60*time.Second, "burst: give up after this long")
	flag.DurationVar(&o.idle, "idle", 30*time.Second, "idle: CPU measurement window")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "idle: wait after all pods are Running before the window starts")
	flag.DurationVar(&o.poll, "poll", 25*time.Millisecond, "burst: API poll interval (GET /api/v1/pods)")
	flag.IntVar(&o.grace, "grace", 2, "pods' terminationGracePeriodSeconds")
	flag.StringVar(&o.subnet, "subnet", "10.197.0.0/16", "pod subnet (must not overlap the host's addresses)")
	flag.StringVar(&o.bridge, "bridge", "", "bridge name (default: the first free agbench<n>)")
	flag.StringVar(&o.logLevel, "log-level", "info", "agentd's log-level (debug shows each action; costs time)")
	flag.BoolVar(&o.seccompDefault, "seccomp-default", true, "agentd's seccomp-default: false runs the pods unconfined, to measure what the RuntimeDefault filter costs")
	flag.StringVar(&o.saveLog, "save-log", "", "copy agentd's log to this file at the end (after a failure it is kept as <work dir>.agentd.log anyway)")
	flag.DurationVar(&o.timeout, "timeout", 4*time.Minute, "give up (and clean up) after this long")
	flag.Parse()

	benchutil.Main("benchagent", func(ctx context.Context) error { return run(ctx, &o) })
}

func run(ctx context.Context, o *options) (err error) {
	began := time.Now()
	if os.Geteuid() != 0 {
		return errors.New("needs root (namespaces, mounts, cgroups, a bridge): run it with sudo")
	}
	for _, b := range benchutil.Binaries {
		if _, err := os.Stat(filepath.Join(o.bin, b)); err != nil {
			return fmt.Errorf("%w: run `make build`", err)
		}
	}
	if _, err := os.Stat(o.image); err != nil {
		return fmt.Errorf("%w: run `make image`", err)
	}
	if err := benchutil.CheckNetworkTools(); err != nil {
		return err
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	base, err := benchutil.WorkDir(o.dir, "agentd-bench-agent.")
	if err != nil {
		return err
	}
	// A snapshot of the binaries: a `make build` elsewhere during the run must not
	// swap them under agentd and its monitors.
	if err = benchutil.CopyBinaries(bin, filepath.Join(base, "bin")); err != nil {
		_ = os.RemoveAll(base)
		return err
	}
	bin = filepath.Join(base, "bin")
	fmt.Println("== machine")
	printMachine(base, bin)

	e, err := newEnv(o, base, bin)
	if err != nil {
		_ = os.RemoveAll(base)
		return err
	}
	defer func() {
		// agentd's log is kept when asked, and when something failed.
		keep := o.saveLog
		if keep == "" && err != nil {
			keep = base + ".agentd.log"
		}
		if cerr := e.cleanup(keep); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean-up found leftovers:\n%w", cerr))
		}
		fmt.Printf("total time %.1f s\n", time.Since(began).Seconds())
	}()
	fmt.Printf("work dir %s, cgroup parent %s, bridge %s, subnet %s, live-restore false\n", base, e.parent, e.bridge, e.subnet)
	if err := benchutil.ImportImage(ctx, e.bin, e.root, o.image); err != nil {
		return err
	}
	res := &results{o: o}
	fmt.Printf("== yardstick: conmon+runc start -> first output, %d+1 warm-up starts\n", o.uStarts)
	if res.u, err = yardstick.Measure(ctx, yardstick.Config{Dir: filepath.Join(base, "yardstick"), Conmon: o.conmon, Runc: o.runc,
		Image: o.image, Warmup: 1, Starts: o.uStarts}); err != nil {
		return err
	}
	fmt.Println(res.u)
	if res.startup, err = e.start(ctx); err != nil {
		return err
	}
	fmt.Printf("agentd pid %d answered on its socket %.0f ms after exec\n", e.Pid(), ms(res.startup))

	err = measureAll(ctx, e, res)
	res.loadEnd = benchutil.LoadAvg()
	if res.u != nil {
		fmt.Println()
		if err != nil {
			fmt.Println("== the run failed (see below); what was measured before:")
		}
		res.print()
	}
	return err
}

func measureAll(ctx context.Context, e *env, res *results) (err error) {
	o := e.o
	fmt.Println("== 0. process start: agentd's Go package init; `agentctl version` against a hello-world Go binary, interleaved")
	if res.proc, err = measureProcStart(ctx, e); err != nil {
		return fmt.Errorf("process start: %w", err)
	}
	fmt.Printf("== 1. manifest written -> \"ready\" in the pod's log file: %d+%d warm-up pods, one at a time, each removed (and gone from the API) before the next\n", o.starts, o.warmup)
	if res.lat, err = measureLatency(ctx, e, o.warmup, o.starts, "lat", func(int) string { return testImage }, corev1.PullNever); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	if o.pullStarts > 0 {
		reg, err := startPullRegistry(o.image, o.warmup+o.pullStarts)
		if err != nil {
			return fmt.Errorf("latency with a pull: %w", err)
		}
		defer reg.close()
		res.pullSize = reg.size
		fmt.Printf("== 1b. manifest written -> \"ready\", the image pulled first (imagePullPolicy Always) from %s (in this process, %.1f MiB compressed): %d+%d warm-up pods, each with a copy of its own\n",
			reg.repo, float64(reg.size)/(1<<20), o.pullStarts, o.warmup)
		if res.pullLat, err = measureLatency(ctx, e, o.warmup, o.pullStarts, "pull", reg.ref, corev1.PullAlways); err != nil {
			return fmt.Errorf("latency with a pull: %w", err)
		}
	}
	fmt.Printf("== 2. %d manifests written at once (temp + rename) -> all Running, every container running (GET /api/v1/pods every %v)\n", o.burst, o.poll)
	if res.burst, err = measureBurst(ctx, e, o.burst); err != nil {
		return fmt.Errorf("burst: %w", err)
	}
	fmt.Printf("== 3. idle: %v settle, then %v window with %d pods running, nothing talking to agentd\n", o.settle, o.idle, o.burst)
	if res.idle, err = measureIdle(ctx, e, o.burst); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	fmt.Printf("== 4. SIGTERM to agentd (live restore off): it stops all %d pods (grace %d s; containers exit on TERM)\n", o.burst, o.grace)
	if res.stop, err = measureStop(ctx, e, o.burst); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}

func printMachine(base, bin string) {
	m := benchutil.ReadMachine(base)
	fmt.Printf("nproc %d, kernel %s %s, cpu %q, memory %s, cgroup %s, work dir on %s\n",
		m.NProc, m.Kernel, m.Arch, m.CPU, m.Memory, m.Cgroup, m.FS)
	out, _ := exec.Command(filepath.Join(bin, "agentd"), "--version").Output()
	fmt.Printf("%s (bin/ copied to %s at start), benchagent built with %s\n", strings.TrimSpace(string(out)), bin, goruntime.Version())
	c0 := benchutil.ReadCPUStat()
	time.Sleep(time.Second)
	c1 := benchutil.ReadCPUStat()
	busy := "?"
	if c1.Total > c0.Total {
		busy = fmt.Sprintf("%.0f %%", float64(c1.Busy()-c0.Busy())/float64(c1.Total-c0.Total)*100)
	}
	fmt.Printf("load average at start: %s; CPU busy over the second before the start: %s (other work on the machine skews every number below)\n", benchutil.LoadAvg(), busy)
}
