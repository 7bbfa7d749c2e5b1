// Command benchmon measures agentd's per-container monitor (agent-monitor, which
// execs agent-monitor-lean) against Debian's conmon + runc in the same run:
// memory per monitor with N containers running, start → first log line latency
// (conmon+runc's p50 is u, the yardstick of every target), and log throughput.
// It drives both binaries directly: agent-monitor through its public contract,
// package protocol (see agentmonitor.go), conmon and runc through their command
// lines and an OCI bundle. Run it as root through hack/bench-monitor.sh (after
// `make build image`):
//
//	go run ./hack/benchmon [-n 20] [-starts 15] [-log-mb 200] [-reps 3] ...
//
// Everything it creates (containers, monitors, conmons, mounts, cgroups, files)
// lives under one temporary directory and two cgroup parents of its own, and is
// removed at the end, also on failure or SIGINT/SIGTERM.
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
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
	"github.com/agentd-project/agentd/hack/internal/yardstick"
)

type options struct {
	bin, image, dir    string
	conmon, runc       string
	n                  int
	settle             time.Duration
	starts, warmup     int
	logMB, reps        int
	conmonSyncLog      bool
	smaps              bool
	timeout            time.Duration
	skipMem, skipStart bool
	skipLog            bool
	only               string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory of agent-monitor and agent-monitor-lean (make build)")
	flag.StringVar(&o.image, "image", "_output/busybox.tar", "busybox test image archive (make image)")
	flag.StringVar(&o.dir, "dir", "", "work directory (default: a new one under /var/tmp, removed at the end)")
	flag.StringVar(&o.conmon, "conmon", "", "conmon binary (default: from PATH)")
	flag.StringVar(&o.runc, "runc", "", "runc binary (default: from PATH)")
	flag.IntVar(&o.n, "n", 20, "memory: containers running at once per monitor kind")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "memory: wait after the last start before reading /proc")
	flag.IntVar(&o.starts, "starts", 15, "latency: measured starts per monitor kind")
	flag.IntVar(&o.warmup, "warmup", 1, "latency: unmeasured starts first")
	flag.IntVar(&o.logMB, "log-mb", 200, "throughput: MB (10^6 bytes) of 100-byte lines the container writes")
	flag.IntVar(&o.reps, "reps", 5, "throughput: runs per monitor kind (interleaved); the median counts")
	flag.BoolVar(&o.conmonSyncLog, "conmon-sync-log", false, "let conmon sync(2) its log when the container exits (conmon's default; off = --no-sync-log, since agent-monitor does not sync)")
	flag.BoolVar(&o.smaps, "smaps", false, "always print agent-monitor-lean's /proc/<pid>/smaps by mapping (printed anyway when the PSS target is missed)")
	flag.DurationVar(&o.timeout, "timeout", 4*time.Minute, "give up (and clean up) after this long")
	flag.BoolVar(&o.skipMem, "skip-memory", false, "skip the memory measurement")
	flag.BoolVar(&o.skipStart, "skip-latency", false, "skip the start latency measurement")
	flag.BoolVar(&o.skipLog, "skip-throughput", false, "skip the log throughput measurement")
	flag.StringVar(&o.only, "only", "", "measure only one kind of monitor: agent or conmon (no table then: raw numbers only)")
	flag.Parse()

	benchutil.Main("benchmon", func(ctx context.Context) error { return run(ctx, &o) })
}

func run(ctx context.Context, o *options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (namespaces, mounts, cgroups): run it with sudo")
	}
	for _, b := range []string{"agent-monitor", "agent-monitor-lean"} {
		if _, err := os.Stat(filepath.Join(o.bin, b)); err != nil {
			return fmt.Errorf("%w: run `make build`", err)
		}
	}
	if _, err := os.Stat(o.image); err != nil {
		return fmt.Errorf("%w: run `make image`", err)
	}
	for _, p := range []*string{&o.conmon, &o.runc} {
		name := map[*string]string{&o.conmon: "conmon", &o.runc: "runc"}[p]
		if *p == "" {
			if *p, err = exec.LookPath(name); err != nil {
				return fmt.Errorf("%s not found: run `hack/install-deps.sh` (apt-get install %s)", name, name)
			}
		}
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	base, err := benchutil.WorkDir(o.dir, "agentd-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if cerr := finalCleanup(base); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	fmt.Println("== machine")
	printMachine(base, bin, o)

	rootfs, err := yardstick.Unpack(ctx, o.image, filepath.Join(base, "image"))
	if err != nil {
		return err
	}
	ag, err := newAgentMonitor(filepath.Join(base, "agent"), bin, rootfs)
	if ag != nil {
		defer func() {
			if cerr := ag.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up agent-monitor: %w", cerr))
			}
		}()
	}
	if err != nil {
		return fmt.Errorf("agent-monitor: %w", err)
	}
	cm, err := yardstick.NewConmonRunc(filepath.Join(base, "conmon"), o.conmon, o.runc, rootfs, o.conmonSyncLog)
	if cm != nil {
		defer func() {
			if cerr := cm.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up conmon: %w", cerr))
			}
		}()
	}
	if err != nil {
		return fmt.Errorf("conmon: %w", err)
	}
	drivers := []yardstick.Driver{ag, cm}
	switch o.only {
	case "":
	case "agent":
		drivers = []yardstick.Driver{ag}
	case "conmon":
		drivers = []yardstick.Driver{cm}
	default:
		return fmt.Errorf("-only %q: want agent or conmon", o.only)
	}

	res := &results{n: o.n, logBytes: int64(o.logMB) * 1e6}
	if !o.skipMem {
		for _, d := range drivers {
			fmt.Printf("== memory: %s, %d containers running `sleep 3600`\n", d.Name(), o.n)
			m, err := measureMemory(ctx, d, o.n, o.settle, d == yardstick.Driver(ag))
			if err != nil {
				return fmt.Errorf("memory, %s: %w", d.Name(), err)
			}
			res.mem = append(res.mem, m)
		}
		fmt.Printf("== memory: an empty Go program (GOMAXPROCS=1), %d running: the floor of any Go monitor\n", o.n)
		if res.floor, err = measureGoFloor(ctx, base, o.n, o.settle); err != nil {
			return fmt.Errorf("memory, empty Go program: %w", err)
		}
	}
	if !o.skipStart {
		fmt.Printf("== start latency: %d+%d warm-up starts each, interleaved\n", o.starts, o.warmup)
		lat, err := measureLatency(ctx, drivers, o.warmup, o.starts)
		if err != nil {
			return fmt.Errorf("start latency: %w", err)
		}
		res.lat = lat
	}
	if !o.skipLog {
		fmt.Printf("== log throughput: %d MB of 100-byte lines, %d runs each, interleaved\n", o.logMB, o.reps)
		tp, err := measureThroughput(ctx, drivers, res.logBytes, o.reps)
		if err != nil {
			return fmt.Errorf("log throughput: %w", err)
		}
		res.tput = tp
	}
	fmt.Printf("load average at end: %s\n", benchutil.LoadAvg())
	fmt.Println()
	res.print(o)
	return nil
}

func printMachine(base, bin string, o *options) {
	m := benchutil.ReadMachine(base)
	fmt.Printf("nproc %d, kernel %s %s, cpu %q, memory %s, cgroup %s\n", m.NProc, m.Kernel, m.Arch, m.CPU, m.Memory, m.Cgroup)
	fmt.Printf("work dir %s (%s)\n", base, m.FS)
	for _, b := range []string{"agent-monitor", "agent-monitor-lean"} {
		if fi, err := os.Stat(filepath.Join(bin, b)); err == nil {
			fmt.Printf("%s: %s (%.1f MB)\n", b, filepath.Join(bin, b), float64(fi.Size())/1e6)
		}
	}
	fmt.Printf("peer: %s\n", yardstick.Versions(o.conmon, o.runc))
	fmt.Printf("go %s\n", goruntime.Version())
	fmt.Printf("load average at start: %s (other work on the machine skews latency and throughput; the two monitors run interleaved)\n", benchutil.LoadAvg())
}

// finalCleanup makes sure nothing of ours is left: no mount under base, no process
// running from it, no cgroup of ours; then removes base. It reports leftovers.
func finalCleanup(base string) error {
	var errs []error
	for _, mp := range benchutil.MountsUnder(base) {
		errs = append(errs, fmt.Errorf("left mounted: %s (unmounting)", mp))
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
	if left := benchutil.MountsUnder(base); len(left) > 0 {
		return errors.Join(append(errs, fmt.Errorf("still mounted, %s kept: %v", base, left))...)
	}
	// Processes whose command line or cwd names base: monitors, conmons and
	// containers of this run all do (state dirs, bundles, rootfs). We ourselves,
	// and `go run` / the script that started us, are skipped.
	for _, p := range benchutil.Processes(benchutil.Ancestors()) {
		if benchutil.Alive(p.Pid) && p.Uses(base) {
			errs = append(errs, fmt.Errorf("left running: pid %d %s", p.Pid, p.Cmd))
		}
	}
	for _, name := range []string{fmt.Sprintf("agentd-bench-%d", os.Getpid()), fmt.Sprintf("agentd-bench-conmon-%d", os.Getpid())} {
		errs = append(errs, benchutil.RemoveCgroups(name)...)
	}
	if err := os.RemoveAll(base); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		fmt.Printf("clean-up: nothing left (no process, mount or cgroup of this run; %s removed)\n", base)
	}
	return errors.Join(errs...)
}
