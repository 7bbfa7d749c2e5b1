// Command benchmon measures agentd's per-container monitor (agent-monitor, which
// execs agent-monitor-lean) against Debian's conmon + runc in the same run:
// memory per monitor with N containers running, start → first log line latency,
// and log throughput. Run it as root through hack/bench-monitor.sh (after
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
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/runtime"
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

	// A closed stdout (`| head`) must not kill us before the clean-up: get EPIPE instead.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	code := 0
	if err := run(ctx, &o); err != nil {
		fmt.Fprintln(os.Stderr, "benchmon:", err)
		code = 1
		if ctx.Err() != nil {
			code = 130
		}
	}
	stop()
	os.Exit(code)
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

	base := o.dir
	if base == "" {
		if base, err = os.MkdirTemp("/var/tmp", "agentd-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(base, 0o700); err != nil {
		return err
	}
	if base, err = filepath.Abs(base); err != nil {
		return err
	}
	defer func() {
		if cerr := finalCleanup(base); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	fmt.Println("== machine")
	printMachine(base, bin, o)

	store, err := image.Open(filepath.Join(base, "images"))
	if err != nil {
		return err
	}
	if _, err := store.Import(ctx, o.image); err != nil {
		return fmt.Errorf("import %s: %w", o.image, err)
	}
	stored, err := store.Get("localhost/busybox:latest")
	if err != nil {
		return err
	}
	img := runtime.ImageFromStore(stored)

	ag, err := newOurs(filepath.Join(base, "agent"), bin, img)
	if ag != nil {
		defer func() {
			if cerr := ag.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up agent-monitor: %w", cerr))
			}
		}()
	}
	if err != nil {
		return fmt.Errorf("agent runtime: %w", err)
	}
	cm, err := newConmonRunc(filepath.Join(base, "conmon"), o.conmon, o.runc, stored.Layers, o.conmonSyncLog)
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
	drivers := []driver{ag, cm}
	switch o.only {
	case "":
	case "agent":
		drivers = []driver{ag}
	case "conmon":
		drivers = []driver{cm}
	default:
		return fmt.Errorf("-only %q: want agent or conmon", o.only)
	}

	res := &results{n: o.n, logBytes: int64(o.logMB) * 1e6}
	if !o.skipMem {
		for _, d := range drivers {
			fmt.Printf("== memory: %s, %d containers running `sleep 3600`\n", d.Name(), o.n)
			m, err := measureMemory(ctx, d, o.n, o.settle, d == driver(ag))
			if err != nil {
				return fmt.Errorf("memory, %s: %w", d.Name(), err)
			}
			res.mem = append(res.mem, m)
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
	res.stops, res.stopEarly = ag.stops.Load(), ag.stopEarly.Load()
	fmt.Printf("load average at end: %s\n", loadavg())
	fmt.Println()
	res.print(o)
	return nil
}

func printMachine(base, bin string, o *options) {
	var u unix.Utsname
	_ = unix.Uname(&u)
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	var sfs unix.Statfs_t
	_ = unix.Statfs(base, &sfs)
	fsName := map[int64]string{0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs"}[int64(sfs.Type)]
	if fsName == "" {
		fsName = fmt.Sprintf("0x%x", sfs.Type)
	}
	cgv := "v1"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		cgv = "v2"
	}
	fmt.Printf("nproc %d, kernel %s %s, cpu %q, memory %s, cgroup %s\n",
		goruntime.NumCPU(), unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:]), cpu, mem, cgv)
	fmt.Printf("work dir %s (%s)\n", base, fsName)
	for _, b := range []string{"agent-monitor", "agent-monitor-lean"} {
		if fi, err := os.Stat(filepath.Join(bin, b)); err == nil {
			fmt.Printf("%s: %s (%.1f MB)\n", b, filepath.Join(bin, b), float64(fi.Size())/1e6)
		}
	}
	for _, c := range [][]string{{o.conmon, "--version"}, {o.runc, "--version"}} {
		out, _ := exec.Command(c[0], c[1:]...).Output()
		first := strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
		fmt.Printf("%s: %s\n", c[0], first)
	}
	fmt.Printf("go %s\n", goruntime.Version())
	fmt.Printf("load average at start: %s (other work on the machine skews latency and throughput; the two monitors run interleaved)\n", loadavg())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// finalCleanup makes sure nothing of ours is left: no mount under base, no process
// running from it, no cgroup of ours; then removes base. It reports leftovers.
func finalCleanup(base string) error {
	var errs []error
	for _, mp := range mountsUnder(base) {
		errs = append(errs, fmt.Errorf("left mounted: %s (unmounting)", mp))
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
	if left := mountsUnder(base); len(left) > 0 {
		return errors.Join(append(errs, fmt.Errorf("still mounted, %s kept: %v", base, left))...)
	}
	for _, p := range processesUsing(base) {
		errs = append(errs, fmt.Errorf("left running: pid %d %s", p.pid, p.cmd))
	}
	for _, name := range []string{fmt.Sprintf("agentd-bench-%d", os.Getpid()), fmt.Sprintf("agentd-bench-conmon-%d", os.Getpid())} {
		for _, root := range cgroupRoots() {
			dir := filepath.Join(root, name)
			removeEmptyTree(dir)
			if _, err := os.Stat(dir); err == nil {
				errs = append(errs, fmt.Errorf("cgroup left: %s", dir))
			}
		}
	}
	if err := os.RemoveAll(base); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		fmt.Printf("clean-up: nothing left (no process, mount or cgroup of this run; %s removed)\n", base)
	}
	return errors.Join(errs...)
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
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

type proc struct {
	pid int
	cmd string
}

// processesUsing lists processes whose command line or cwd names dir (monitors,
// conmons and containers of this run all do: state dirs, bundles, rootfs).
func processesUsing(dir string) []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	skip := ancestors() // we ourselves, and `go run` / the script that started us
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || skip[pid] {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err == nil && alive(pid) && (strings.Contains(cmd, dir) || strings.HasPrefix(root, dir) || strings.HasPrefix(cwd, dir)) {
			out = append(out, proc{pid, cmd})
		}
	}
	return out
}

// ancestors are this process and its parents up to pid 1.
func ancestors() map[int]bool {
	out := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !out[pid]; {
		out[pid] = true
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			break
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			break
		}
		if _, err := fmt.Sscanf(f[1], "%d", &pid); err != nil {
			break
		}
	}
	return out
}
