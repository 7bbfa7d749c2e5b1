package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// profileEstimate is about what a profile takes on 2 busy CPUs: building and
// running the benchmark (starting and stopping its monitors), building agentd
// with its symbols, one restore under perf.
const profileEstimate = 2 * time.Minute

// goBenchMonitors caps the monitors of the per-monitor benchmark: it starts its
// own, one after the other, and its figures are per monitor.
const goBenchMonitors = 100

// profile says where a restore of n pods spends its time: the per-monitor part
// from the benchmark in the package that does it, then perf of one restore (which
// stops agentd and starts it again).
func profile(ctx context.Context, e *env, n int, before *snapshot) ([]string, *perfResult, error) {
	lines, err := goBench(ctx, e, min(n, goBenchMonitors))
	if err != nil {
		return lines, nil, err
	}
	pr, err := perfRestore(ctx, e, before)
	return lines, pr, err
}

// goBench runs agent/runtime's BenchmarkRootRestore (List, Inspect and the
// handshake over n live monitors of its own, beside agentd's) and returns its
// result lines. It runs from the module's root, as the script starts us.
func goBench(ctx context.Context, e *env, n int) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-run", "^$", "-bench", "RootRestore", "-benchtime", "20x", "./agent/runtime")
	cmd.Env = append(os.Environ(), "AGENTD_TEST_BIN="+e.bin, "AGENTD_TEST_IMAGE="+e.o.image, fmt.Sprintf("AGENTD_BENCH_MONITORS=%d", n))
	out, err := cmd.CombinedOutput()
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "Benchmark") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	if err != nil || len(lines) == 0 {
		return lines, fmt.Errorf("go test -bench RootRestore ./agent/runtime (run from the module's root): %v: %s", err, out)
	}
	return lines, nil
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
