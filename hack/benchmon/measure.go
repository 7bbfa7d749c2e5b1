package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
	"github.com/agentd-project/agentd/hack/internal/yardstick"
)

// memResult is the memory of one kind of monitor with n containers running.
type memResult struct {
	name  string
	per   []benchutil.MemStat // one per monitor process
	smaps []mapping           // of one agent-monitor-lean process
	smPid int
}

func (m *memResult) sum(f func(benchutil.MemStat) int64) int64 {
	var s int64
	for _, p := range m.per {
		s += f(p)
	}
	return s
}

// avg is the sum over all monitor processes divided by the number of containers.
func (m *memResult) avg(n int, f func(benchutil.MemStat) int64) float64 {
	return float64(m.sum(f)) / float64(n)
}

func measureMemory(ctx context.Context, d yardstick.Driver, n int, settle time.Duration, keepSmaps bool) (_ *memResult, err error) {
	var cs []*yardstick.Container
	defer func() {
		if serr := yardstick.StopAll(context.Background(), d, cs); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c, err := d.Prepare(fmt.Sprintf("mem%02d", i), []string{"sleep", "3600"})
		if c != nil {
			cs = append(cs, c)
		}
		if err != nil {
			return nil, err
		}
		if err := d.Start(ctx, c); err != nil {
			return nil, err
		}
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := &memResult{name: d.Name()}
	for _, c := range cs {
		if !benchutil.Alive(c.Pid) {
			return nil, fmt.Errorf("container %s (pid %d) is not running", c.Name, c.Pid)
		}
		if len(c.MonitorPids) == 0 {
			return nil, fmt.Errorf("container %s: no monitor pid", c.Name)
		}
		for _, pid := range c.MonitorPids {
			m, err := benchutil.ReadMem(pid)
			if err != nil {
				return nil, fmt.Errorf("monitor of %s: %w", c.Name, err)
			}
			res.per = append(res.per, m)
		}
	}
	if keepSmaps && len(cs) > 0 {
		res.smPid = cs[0].MonitorPids[0]
		res.smaps, _ = smapsByMapping(res.smPid)
	}
	fmt.Printf("   PSS per monitor %.0f kB, RSS %.0f kB, anonymous %.0f kB, threads %.1f\n",
		res.avg(n, func(m benchutil.MemStat) int64 { return m.Pss }), res.avg(n, func(m benchutil.MemStat) int64 { return m.Rss }),
		res.avg(n, func(m benchutil.MemStat) int64 { return m.Anonymous }), float64(res.sum(func(m benchutil.MemStat) int64 { return int64(m.Threads) }))/float64(n))
	return res, nil
}

// latResult is one kind of monitor's start → first log line latencies.
type latResult struct {
	name     string
	toLine   []time.Duration // start → "ready" in the log file
	toReturn []time.Duration // start → the start call returned
}

func measureLatency(ctx context.Context, drivers []yardstick.Driver, warmup, starts int) ([]*latResult, error) {
	out := make([]*latResult, len(drivers))
	for i, d := range drivers {
		out[i] = &latResult{name: d.Name()}
	}
	for i := 0; i < warmup+starts; i++ {
		for k, d := range drivers {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			toLine, toReturn, err := yardstick.StartOnce(ctx, d, fmt.Sprintf("lat%02d", i))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.Name(), err)
			}
			if i >= warmup {
				out[k].toLine = append(out[k].toLine, toLine)
				out[k].toReturn = append(out[k].toReturn, toReturn)
			}
		}
	}
	for _, r := range out {
		fmt.Printf("   %-14s start → \"ready\" in log: p50 %s p90 %s\n", r.name, ms(pct(r.toLine, 50)), ms(pct(r.toLine, 90)))
	}
	return out, nil
}

// tputRun is one log throughput run.
type tputRun struct {
	took     time.Duration // start → exited with every byte in the log
	complete bool          // the log was complete when the exit was seen
	records  int64
	content  int64
	inner    time.Duration // "container alone": busybox time's real, inside the container
	cpu      time.Duration // the monitor process's user+sys CPU from the start call's return to the exit
}

type tputResult struct {
	name  string
	runs  []tputRun
	alone tputRun
}

func measureThroughput(ctx context.Context, drivers []yardstick.Driver, total int64, reps int) ([]*tputResult, error) {
	line := strings.Repeat("0", 99) // yes adds the newline: 100-byte lines
	gen := fmt.Sprintf("yes %s | head -c %d", line, total)
	out := make([]*tputResult, len(drivers))
	for i, d := range drivers {
		out[i] = &tputResult{name: d.Name()}
	}
	// The container alone: the same pipeline into /dev/null, timed inside.
	for k, d := range drivers {
		r, err := tputOnce(ctx, d, "alone", []string{"sh", "-c", fmt.Sprintf("time sh -c '%s >/dev/null'", gen)}, 0)
		if err != nil {
			return nil, fmt.Errorf("%s, container alone: %w", d.Name(), err)
		}
		out[k].alone = r
		fmt.Printf("   %-14s container alone (to /dev/null): %s inside, %s start → exit\n", d.Name(), ms(r.inner), ms(r.took))
	}
	for i := 0; i < reps; i++ {
		for k, d := range drivers {
			r, err := tputOnce(ctx, d, fmt.Sprintf("tput%d", i), []string{"sh", "-c", gen}, total)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.Name(), err)
			}
			out[k].runs = append(out[k].runs, r)
			fmt.Printf("   %-14s run %d: %s, %.0f MB/s, monitor CPU %s, %d records, log complete at exit: %v\n",
				d.Name(), i+1, ms(r.took), mbps(total, r.took), ms(r.cpu), r.records, r.complete)
		}
	}
	return out, nil
}

var realRe = regexp.MustCompile(`real\s+(\d+)m\s*([0-9.]+)s`)

// tputOnce starts a container, waits for its exit as recorded by its monitor, and
// checks that the log holds want content bytes (want 0: parse busybox time instead).
func tputOnce(ctx context.Context, d yardstick.Driver, name string, args []string, want int64) (r tputRun, err error) {
	c, err := d.Prepare(name, args)
	if c != nil {
		defer func() {
			if serr := d.Stop(context.Background(), c); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
	}
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := d.Start(ctx, c); err != nil {
		return r, err
	}
	// The monitor's CPU time while it copies: from here (the container created, so
	// agent-monitor's in-process container setup is not counted, nor runc's) to the
	// exit, sampled at every poll (the process may be gone right after).
	var first, last int64 = -1, -1
	if len(c.MonitorPids) > 0 {
		first, _ = benchutil.CPUTicks(c.MonitorPids[0])
		last = first
	}
	if !benchutil.WaitUntil(ctx, 120*time.Second, func() bool {
		if first >= 0 {
			if t, err := benchutil.CPUTicks(c.MonitorPids[0]); err == nil {
				last = t
			}
		}
		return d.Exited(c)
	}) {
		return r, fmt.Errorf("%s did not exit", c.Name)
	}
	r.took = time.Since(t0)
	if first >= 0 {
		r.cpu = time.Duration(last-first) * time.Second / benchutil.ClockTicks
	}
	if want == 0 {
		b, err := os.ReadFile(c.LogPath)
		if err != nil {
			return r, err
		}
		m := realRe.FindStringSubmatch(string(b))
		if m == nil {
			return r, fmt.Errorf("no `real` time in the log: %q", b)
		}
		min, _ := strconv.Atoi(m[1])
		sec, _ := strconv.ParseFloat(m[2], 64)
		r.inner = time.Duration(min)*time.Minute + time.Duration(sec*float64(time.Second))
		return r, nil
	}
	r.records, r.content, err = logCount(c.LogPath)
	if err != nil {
		return r, err
	}
	r.complete = r.content == want
	if !r.complete {
		// Not all there at exit: wait for it (the time then includes our re-counts).
		deadline := time.Now().Add(30 * time.Second)
		for r.content < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			if r.records, r.content, err = logCount(c.LogPath); err != nil {
				return r, err
			}
		}
		r.took = time.Since(t0)
		if r.content != want {
			return r, fmt.Errorf("log of %s has %d content bytes, want %d", c.Name, r.content, want)
		}
	}
	return r, nil
}

// pct is the p-th percentile (nearest rank) of ds.
var pct = benchutil.Percentile

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }
