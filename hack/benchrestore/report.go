package main

import (
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
	"github.com/agentd-project/agentd/hack/internal/yardstick"
)

type report struct {
	o          *options
	env        *env
	u          *yardstick.U
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
// the restores and a profile (its benchmark's build and monitors, perf's build),
// and the clean-up of the extra pods.
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
	restores := time.Duration(r.o.reps+3)*(3*time.Second+time.Duration(to)*2*time.Millisecond) + profileEstimate
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
	if r.u == nil {
		p("the yardstick was not measured: nothing to report")
		return
	}
	p("%s, measured in this run", r.u)
	p("each restore: SIGTERM agentd (live-restore on, the pods keep running), %s pause, exec agentd;", r.o.settle)
	p("  (a) exec -> GET /api/v1/pods (Unix socket, retried every 1 ms) answers with all N pods Running, with the container IDs")
	p("      and restart counts of before (adopted); it ends when that answer has been read, our JSON decoding of it not counted")
	p("  (b) exec -> the timestamp of agentd's log line \"agentd is running\" (\"-\" when it logs none)")
	p("")
	tw := benchutil.NewTable(w)
	tw.Row("pods", "(a) median", "u", "ratio", "target", "", "(b) median", "(a) runs", "per pod")
	for _, lv := range r.levels {
		if len(lv.runs) == 0 {
			tw.Row(strconv.Itoa(lv.n), fmt.Sprintf("not measured: %v", lv.err))
			continue
		}
		a := benchutil.Median(lv.runs, func(x *restoreRun) time.Duration { return x.adopted })
		bm := benchutil.Median(lv.runs, func(x *restoreRun) time.Duration { return x.logRunning })
		t, exact := target(lv.n)
		cells := r.u.Cells(a, t)
		if !exact {
			cells[3] += "*"
		}
		var runs []string
		for _, x := range lv.runs {
			runs = append(runs, ms(x.adopted))
		}
		tw.Row(append(append([]string{strconv.Itoa(lv.n)}, cells...), ms(bm), strings.Join(runs, ", "),
			fmt.Sprintf("%.2f ms", float64(a)/1e6/float64(lv.n)))...)
	}
	tw.Row(strconv.Itoa(dockerRefN), "300 ms", "35 ms", fmt.Sprintf("%.1f u", dockerRefU), "", "", "", "Docker 20.10: DESIGN.md's reference, not measured here")
	tw.Flush()
	if r.hasInterpolated() {
		p("* DESIGN.md names targets for 100 and 1000 pods only; this one is on the line through them (0.5 u + 3.5 u per 900 pods)")
	}
	p("")
	p("each restore in more detail (medians; \"Adopted pod\": agentd's log lines, \"-\" when it logs none):")
	p("%-6s %-14s %-14s %-13s %-11s %-11s %-11s %-9s %s", "pods", "->1st Adopted", "->last Adopted", "->1st answer", "our decode", "warm list", "agentd CPU", "stop", "CPU busy before/load/foreign monitors")
	for _, lv := range r.levels {
		if len(lv.runs) == 0 {
			continue
		}
		m := func(f func(*restoreRun) time.Duration) string { return ms(benchutil.Median(lv.runs, f)) }
		var loads []string
		for _, x := range lv.runs {
			loads = append(loads, fmt.Sprintf("%.0f%%/%.1f/%d", x.busy, x.load1, x.foreign))
		}
		p("%-6d %-14s %-14s %-13s %-11s %-11s %-11s %-9s %s", lv.n,
			m(func(x *restoreRun) time.Duration { return x.firstAdopt }), m(func(x *restoreRun) time.Duration { return x.lastAdopt }),
			m(func(x *restoreRun) time.Duration { return x.firstAnswer }),
			m(func(x *restoreRun) time.Duration { return x.decode }), m(func(x *restoreRun) time.Duration { return x.warmList }),
			m(func(x *restoreRun) time.Duration { return x.cpu }), m(func(x *restoreRun) time.Duration { return x.stop }), strings.Join(loads, " "))
	}
	p("  ->1st answer: exec -> the API's first answer, whatever it listed; our decode: of the answer that ended (a); warm list: one")
	p("  GET /api/v1/pods of the running agentd; agentd CPU: its CPU time when (a) held; stop: SIGTERM -> exit (live restore on);")
	p("  CPU busy: all CPUs, in the pause before the exec; foreign monitors: agent-monitor processes of other agentds on the machine")
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
		if len(lv.goBench) > 0 {
			p("  go test -bench RootRestore ./agent/runtime, over %d live monitors of its own (List, Inspect, the handshake):", min(lv.n, goBenchMonitors))
			for _, l := range lv.goBench {
				p("    %s", l)
			}
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
