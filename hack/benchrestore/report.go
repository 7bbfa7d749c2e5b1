package main

import (
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"sort"
	"strings"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

type report struct {
	o          *options
	env        *env
	began      time.Time
	levels     []*level
	notes      []string
	cleanup    time.Duration
	cleanupErr error
	total      time.Duration
}

func (r *report) allBatches() []batch {
	var out []batch
	for _, lv := range r.levels {
		out = append(out, lv.batches...)
	}
	return out
}

// perPodStart is the start time per pod of the last batch (the rate degrades as
// pods accumulate: the last batch is the best predictor of the next).
func (r *report) perPodStart() time.Duration {
	bs := r.allBatches()
	if len(bs) == 0 {
		return 200 * time.Millisecond
	}
	b := bs[len(bs)-1]
	return b.took / time.Duration(b.to-b.from)
}

// cleanupEstimate guesses how long stopping n pods takes: agentd stops them in
// parallel; 1000 took 59 s on 2 CPUs (30: 2.4 s).
func (r *report) cleanupEstimate(n int) time.Duration {
	return time.Duration(n)*70*time.Millisecond + 15*time.Second
}

// project estimates what going from `from` to `to` pods costs: starting the rest
// (batch times grow as pods accumulate — the CNI and iptables work per pod grows
// with the number of pods — so the growth seen so far is extrapolated linearly),
// the restores and a profile, and the clean-up of the extra pods.
func (r *report) project(from, to int) time.Duration {
	bs := r.allBatches()
	per := r.perPodStart()
	var growth time.Duration // per pod, per batch
	if len(bs) >= 2 {
		first := bs[0]
		p0 := first.took / time.Duration(first.to-first.from)
		growth = max(0, (per-p0)/time.Duration(len(bs)-1))
	}
	var start time.Duration
	for k, at := 1, from; at < to; k++ {
		n := min(r.o.batch, to-at)
		start += time.Duration(n) * (per + time.Duration(k)*growth)
		at += n
	}
	restores := time.Duration(r.o.reps+3)*(3*time.Second+time.Duration(to)*2*time.Millisecond) + 45*time.Second
	return start + restores + r.cleanupEstimate(to) - r.cleanupEstimate(from)
}

func (r *report) print() {
	var b strings.Builder
	r.write(&b)
	fmt.Print(b.String())
	if r.o.reportFile != "" {
		if err := os.WriteFile(r.o.reportFile, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchrestore: -report:", err)
		}
	}
}

func (r *report) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	host, _ := os.Hostname()
	p("")
	p("== agentd live restore benchmark (hack/bench-restore.sh) ==")
	p("agentd %s; %s, %d CPUs, %s", r.env.version, host, goruntime.NumCPU(), kernel())
	p("each restore: SIGTERM agentd (live-restore on, the pods keep running), %s pause, exec agentd;", r.o.settle)
	p("  (a) exec -> GET /api/v1/pods (Unix socket, retried every 1 ms) answers with all N pods Running, with the container IDs")
	p("      and restart counts of before (adopted); it ends when that answer has been read, our JSON decoding of it not counted")
	p("  (b) exec -> the timestamp of agentd's log line \"agentd is running\"")
	p("")
	p("%-6s %-13s %-13s %-10s %-9s %-28s %s", "pods", "(a) median", "(b) median", "target", "(a)/tgt", "(a) runs", "per pod")
	for _, lv := range r.levels {
		if len(lv.runs) == 0 {
			p("%-6d not measured: %v", lv.n, lv.err)
			continue
		}
		a := benchutil.Median(lv.runs, func(x *restoreRun) time.Duration { return x.adopted })
		bm := benchutil.Median(lv.runs, func(x *restoreRun) time.Duration { return x.logRunning })
		t, exact := target(lv.n)
		ts := ms(t)
		if !exact {
			ts += "*"
		}
		var runs []string
		for _, x := range lv.runs {
			runs = append(runs, ms(x.adopted))
		}
		p("%-6d %-13s %-13s %-10s %-9s %-28s %s", lv.n, ms(a), ms(bm), ts, fmt.Sprintf("%.2fx", float64(a)/float64(t)),
			strings.Join(runs, ", "), fmt.Sprintf("%.2f ms", float64(a)/1e6/float64(lv.n)))
	}
	p("%-6d %-13s %-13s %-10s %-9s %-28s %s", dockerRefN, ms(dockerRefTime), "", "", "", "Docker 20.10 (reference)",
		fmt.Sprintf("%.2f ms; DESIGN.md's number for this kind of machine, not measured here", float64(dockerRefTime)/1e6/dockerRefN))
	if r.hasInterpolated() {
		p("* DESIGN.md names targets for 100 and 1000 pods only; this one is interpolated at 0.5 ms per pod")
	}
	p("")
	p("where the time of each restore goes (from agentd's own log timestamps; medians):")
	p("%-6s %-14s %-14s %-12s %-13s %-11s %-11s %-11s %-9s %s", "pods", "->1st Adopted", "->last Adopted", "->running", "->1st answer", "our decode", "warm list", "agentd CPU", "stop", "CPU busy before/load/foreign monitors")
	for _, lv := range r.levels {
		if len(lv.runs) == 0 {
			continue
		}
		m := func(f func(*restoreRun) time.Duration) string { return ms(benchutil.Median(lv.runs, f)) }
		var loads []string
		for _, x := range lv.runs {
			loads = append(loads, fmt.Sprintf("%.0f%%/%.1f/%d", x.busy, x.load1, x.foreign))
		}
		p("%-6d %-14s %-14s %-12s %-13s %-11s %-11s %-11s %-9s %s", lv.n,
			m(func(x *restoreRun) time.Duration { return x.firstAdopt }), m(func(x *restoreRun) time.Duration { return x.lastAdopt }),
			m(func(x *restoreRun) time.Duration { return x.logRunning }), m(func(x *restoreRun) time.Duration { return x.firstAnswer }),
			m(func(x *restoreRun) time.Duration { return x.decode }), m(func(x *restoreRun) time.Duration { return x.warmList }),
			m(func(x *restoreRun) time.Duration { return x.cpu }), m(func(x *restoreRun) time.Duration { return x.stop }), strings.Join(loads, " "))
	}
	p("  ->1st Adopted: process start, config, agent.New (CNI plugin checks), runtime.List of every monitor; ->last Adopted: restore's")
	p("  per-pod loop; ->running: API listen + journal watches; warm list: one GET /api/v1/pods of a running agentd; agentd CPU: its")
	p("  CPU time when (a) held; stop: SIGTERM -> exit (live restore on); CPU busy: all CPUs, in the second before the exec")
	p("")
	p("starting the pods (manifests written %d at a time, each batch waited for until all Running and ready in the API) and memory:", r.o.batch)
	for _, lv := range r.levels {
		var total time.Duration
		var parts []string
		for _, b := range lv.batches {
			total += b.took
			parts = append(parts, ms(b.took))
		}
		from := 0
		if len(lv.batches) > 0 {
			from = lv.batches[0].from
		}
		p("%-6d pods %d..%d started in %s (%.1f pods/s; batches: %s)", lv.n, from+1, lv.n, ms(total),
			float64(lv.n-from)/max(total.Seconds(), 1e-9), strings.Join(parts, " "))
		p("       %d monitors, summed PSS %.1f MiB = %.0f KiB per monitor; agentd PSS %.1f MiB", lv.monitors, float64(lv.pssKB)/1024,
			float64(lv.pssKB)/float64(max(lv.monitors, 1)), float64(lv.agentdPSS)/1024)
		if len(lv.batches) > 0 {
			p("       CPU during the last batch: %s; CPU busy with the %d pods idle: %.0f%%", lv.batches[len(lv.batches)-1].cpu, lv.n, lv.quiet)
		}
		if len(lv.sampled) > 0 {
			p("       agentd's child processes seen while starting (sampled every 500 ms; count of samples): %s", topCounts(lv.sampled, 8))
		}
	}
	for _, lv := range r.levels {
		if !lv.profiled {
			continue
		}
		p("")
		p("profile of the restore of %d pods:", lv.n)
		if lp := lv.inproc; lp != nil {
			p("  agentd's restore steps replayed in this process with agentd stopped (%d monitors, %d not Alive):", lp.monitors, lp.notAlive)
			p("    exec of `agentd --version` (fork+exec+Go start: the floor)   %s", ms(lp.execFloor))
			p("    network.New (execs the bridge and host-local plugins)        %s", ms(lp.netNew))
			p("    image.Open                                                   %s", ms(lp.imageOpen))
			p("    saveState: one atomic JSON write with fsync                  %s", ms(lp.fsync))
			p("    runtime.List, sequential as in agentd (median of 3)          %s = %.0f us per monitor", ms(lp.list), float64(lp.list)/1e3/float64(max(lp.monitors, 1)))
			p("      its steps summed: read config.json %s, read journal.json %s, /proc pid check %s, connect %s, hello round trip %s",
				ms(lp.readConfig), ms(lp.readJournal), ms(lp.alive), ms(lp.connect), ms(lp.hello))
			p("    pod records: read + decode %d pod.json (restore's loop)       %s", lp.monitors, ms(lp.loadPods))
			p("    manifest source's first snapshot (starts once the API listens) %s", ms(lp.source))
			p("    runtime.Inspect in parallel: 4 workers %s, 16 workers %s, 64 workers %s", ms(lp.parallel[4]), ms(lp.parallel[16]), ms(lp.parallel[64]))
			p("    journal + /proc check only (no config, no handshake), sequential %s", ms(lp.journalOnly))
		}
		if pr := lv.perf; pr != nil {
			p("  perf record -g of one restore (unstripped agentd, built in %s; %s):", ms(pr.buildTook), pr.samples)
			if pr.run != nil {
				p("    this run, perf's own start included: (a) %s, (b) %s, ->1st Adopted %s", ms(pr.run.adopted), ms(pr.run.logRunning), ms(pr.run.firstAdopt))
			}
			p("    top symbols, self time:")
			for _, l := range pr.self {
				p("      %s", l)
			}
			p("    agentd functions (and JSON, GC, syscalls), inclusive time:")
			for _, l := range pr.children {
				p("      %s", l)
			}
		}
		if lv.profileErr != nil {
			p("  profile error: %v", lv.profileErr)
		}
	}
	p("")
	for _, n := range r.notes {
		p("note: %s", n)
	}
	p("clean-up (stop %d pods with live restore off, check that nothing is left) took %s; whole run %s", r.env.pods, ms(r.cleanup), r.total.Round(time.Second))
	if r.cleanupErr != nil {
		p("clean-up problems: %v", r.cleanupErr)
	}
}

func (r *report) hasInterpolated() bool {
	for _, lv := range r.levels {
		if _, exact := target(lv.n); !exact && len(lv.runs) > 0 {
			return true
		}
	}
	return false
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return "Linux " + strings.TrimSpace(string(b))
}

func topCounts(m map[string]int, n int) string {
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range m {
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].v > kvs[j].v || kvs[i].v == kvs[j].v && kvs[i].k < kvs[j].k })
	var out []string
	for i, x := range kvs {
		if i == n {
			break
		}
		out = append(out, fmt.Sprintf("%s %d", x.k, x.v))
	}
	return strings.Join(out, ", ")
}
