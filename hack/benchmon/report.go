package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

type results struct {
	n        int
	logBytes int64
	mem      []*memResult  // agent, conmon
	floor    *memResult    // an empty Go program
	lat      []*latResult  // agent, conmon
	tput     []*tputResult // agent, conmon
}

func (r *results) print(o *options) {
	if o.only != "" {
		fmt.Println("== one kind of monitor measured (-only): no comparison table")
	} else {
		r.table()
	}
	r.raw(o)
}

// pssMissed reports whether agent-monitor's PSS misses its target, conmon's.
func (r *results) pssMissed() bool {
	if len(r.mem) != 2 {
		return false
	}
	pss := func(m benchutil.MemStat) int64 { return m.Pss }
	return r.mem[0].avg(r.n, pss) > r.mem[1].avg(r.n, pss)
}

// table prints each figure of agent-monitor beside conmon+runc's from this run
// (its yardstick), the ratio and DESIGN.md's target for it ("Performance targets").
func (r *results) table() {
	fmt.Println("== results (ratio = agent-monitor / conmon+runc; MiB = 1024 kB from /proc; MB/s = 10^6 bytes/s)")
	if len(r.lat) == 2 {
		fmt.Printf("u = %s: conmon+runc start -> first log line, p50 (the yardstick of every target in DESIGN.md)\n", ms(pct(r.lat[1].toLine, 50)))
	}
	tw := benchutil.NewTable(os.Stdout)
	tw.Row("metric", "agent-monitor", "conmon+runc", "ratio", "target", "")
	tw.Row("------", "-------------", "-----------", "-----", "------", "")
	// row prints a metric; with target > 0 the ratio must be at most (or, with
	// atLeast, at least) target.
	row := func(metric, a, c string, ratio, target float64, atLeast bool) {
		rs, ts, v := "-", "", ""
		if ratio > 0 {
			rs = fmt.Sprintf("%.2fx", ratio)
		}
		if target > 0 {
			if atLeast {
				ts, v = fmt.Sprintf(">= %.1fx", target), benchutil.Verdict(ratio >= target)
			} else {
				ts, v = fmt.Sprintf("<= %.1fx", target), benchutil.Verdict(ratio <= target)
			}
		}
		tw.Row(metric, a, c, rs, ts, v)
	}
	if len(r.mem) == 2 {
		a, c := r.mem[0], r.mem[1]
		kb := func(m *memResult, f func(benchutil.MemStat) int64) float64 { return m.avg(r.n, f) }
		mib := func(v float64) string { return fmt.Sprintf("%.2f MiB", v/1024) }
		for _, m := range []struct {
			name   string
			f      func(benchutil.MemStat) int64
			target float64
		}{
			{fmt.Sprintf("PSS per monitor (%d running)", r.n), func(m benchutil.MemStat) int64 { return m.Pss }, 1},
			{"RSS per monitor", func(m benchutil.MemStat) int64 { return m.Rss }, 0},
			{"USS (private) per monitor", benchutil.MemStat.USS, 0},
			{"anonymous (Anonymous:) per monitor", func(m benchutil.MemStat) int64 { return m.Anonymous }, 0},
			{"Pss_Anon per monitor", func(m benchutil.MemStat) int64 { return m.PssAnon }, 0},
			{"Pss_File per monitor", func(m benchutil.MemStat) int64 { return m.PssFile }, 0},
		} {
			av, cv := kb(a, m.f), kb(c, m.f)
			row(m.name, mib(av), mib(cv), ratio(av, cv), m.target, false)
		}
		thr := func(m benchutil.MemStat) int64 { return int64(m.Threads) }
		at, ct := kb(a, thr), kb(c, thr)
		row("threads per monitor", fmt.Sprintf("%.1f", at), fmt.Sprintf("%.1f", ct), ratio(at, ct), 0, false)
		row("monitor processes per container", fmt.Sprintf("%.1f", float64(len(a.per))/float64(r.n)), fmt.Sprintf("%.1f", float64(len(c.per))/float64(r.n)), 0, 0, false)
		if f := r.floor; f != nil {
			pss := func(m benchutil.MemStat) int64 { return m.Pss }
			fv := f.avg(r.n, pss)
			row("PSS of an empty Go program (GOMAXPROCS=1)", mib(fv), mib(kb(c, pss)), ratio(fv, kb(c, pss)), 0, false)
		}
	}
	if len(r.lat) == 2 {
		a, c := r.lat[0], r.lat[1]
		for _, p := range []int{50, 90} {
			av, cv := pct(a.toLine, p), pct(c.toLine, p)
			row(fmt.Sprintf("start -> first log line p%d", p), ms(av), ms(cv), ratio(float64(av), float64(cv)), 0, false)
		}
		av, cv := pct(a.toReturn, 50), pct(c.toReturn, 50)
		row("start call returned p50", ms(av), ms(cv), ratio(float64(av), float64(cv)), 0, false)
	}
	if len(r.tput) == 2 {
		a, c := r.tput[0], r.tput[1]
		med := func(t *tputResult, f func(tputRun) time.Duration) time.Duration {
			var ds []time.Duration
			for _, run := range t.runs {
				ds = append(ds, f(run))
			}
			return pct(ds, 50)
		}
		took := func(run tputRun) time.Duration { return run.took }
		cpu := func(run tputRun) time.Duration { return run.cpu }
		av, cv := mbps(r.logBytes, med(a, took)), mbps(r.logBytes, med(c, took))
		row(fmt.Sprintf("log throughput, %d MB, median of %d", r.logBytes/1e6, len(a.runs)),
			fmt.Sprintf("%.0f MB/s", av), fmt.Sprintf("%.0f MB/s", cv), ratio(av, cv), 1, true)
		ac, cc := med(a, cpu), med(c, cpu)
		row(fmt.Sprintf("monitor CPU (user+sys) per MB, median (10 ms ticks over %d MB)", r.logBytes/1e6),
			fmt.Sprintf("%.2f ms", benchutil.Millis(ac)/float64(r.logBytes/1e6)), fmt.Sprintf("%.2f ms", benchutil.Millis(cc)/float64(r.logBytes/1e6)),
			ratio(float64(ac), float64(cc)), 1, false)
		aa, ca := mbps(r.logBytes, a.alone.inner), mbps(r.logBytes, c.alone.inner)
		row("container alone (to /dev/null, inside)", fmt.Sprintf("%.0f MB/s", aa), fmt.Sprintf("%.0f MB/s", ca), ratio(aa, ca), 0, false)
	}
	tw.Flush()
	if f := r.floor; f != nil && len(r.mem) == 2 {
		pss := func(m benchutil.MemStat) int64 { return m.Pss }
		fmt.Printf("empty Go program: %d copies of hack/benchmon/gofloor, which only waits for a signal; what any Go process holds before it\n", r.n)
		fmt.Printf("  does anything. agent-monitor-lean's PSS is %.0f kB above it; conmon's (C) is %.0f kB below it.\n",
			r.mem[0].avg(r.n, pss)-f.avg(r.n, pss), f.avg(r.n, pss)-r.mem[1].avg(r.n, pss))
	}
	fmt.Println("start call returned: agent-monitor's `start` ran and the monitor reported on its sync pipe; conmon's first process")
	fmt.Println("  exited and `runc start` returned. container alone: the writer's ceiling without a log. No target: no ratio verdict.")
}

func (r *results) raw(o *options) {
	pssMissed := r.pssMissed()
	fmt.Println()
	fmt.Println("== raw numbers")
	for _, m := range r.mem {
		fmt.Printf("memory %s (kB; one line per monitor process):\n", m.name)
		for _, p := range m.per {
			fmt.Printf("  pid %-7d Pss %5d  Rss %5d  Pss_Anon %5d  Pss_File %5d  Anonymous %5d  USS %5d  Threads %d\n",
				p.Pid, p.Pss, p.Rss, p.PssAnon, p.PssFile, p.Anonymous, p.USS(), p.Threads)
		}
		fmt.Printf("  sum: Pss %d kB, Rss %d kB, Anonymous %d kB over %d containers\n",
			m.sum(func(m benchutil.MemStat) int64 { return m.Pss }), m.sum(func(m benchutil.MemStat) int64 { return m.Rss }),
			m.sum(func(m benchutil.MemStat) int64 { return m.Anonymous }), r.n)
	}
	for _, l := range r.lat {
		fmt.Printf("start -> \"ready\" in log, %s (sorted): %s\n", l.name, durs(l.toLine))
		fmt.Printf("start call returned, %s (sorted): %s\n", l.name, durs(l.toReturn))
	}
	if len(r.lat) > 0 {
		fmt.Println("  (the log file is watched with inotify on its directory plus a 1 ms poll: detection within ~1 ms of the write)")
	}
	for _, t := range r.tput {
		fmt.Printf("log throughput, %s:", t.name)
		for _, run := range t.runs {
			fmt.Printf(" %s (%.0f MB/s, monitor CPU %s, %d records, complete at exit %v);", ms(run.took), mbps(r.logBytes, run.took), ms(run.cpu), run.records, run.complete)
		}
		fmt.Printf("\n  container alone: %s inside (busybox time, 10 ms resolution), %s start -> exit\n", ms(t.alone.inner), ms(t.alone.took))
	}
	if len(r.tput) > 0 {
		sync := "--no-sync-log (like agent-monitor, no sync at exit)"
		if o.conmonSyncLog {
			sync = "conmon's default sync(2) of the log at container exit"
		}
		fmt.Printf("  (time = just before the start call -> the monitor recorded the exit (journal / exit file), log checked complete; conmon: %s)\n", sync)
	}
	for _, m := range r.mem {
		if len(m.smaps) > 0 && (pssMissed || o.smaps) {
			printSmaps(m)
		}
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func durs(ds []time.Duration) string { return benchutil.MsList(ds) + " ms" }

func printSmaps(m *memResult) {
	fmt.Printf("\n== /proc/%d/smaps of one agent-monitor-lean, by mapping (kB; sorted by Pss; rows with Rss 0 left out)\n", m.smPid)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "Size\tRss\tPss\tAnonymous\tPrivate\tn\t mapping")
	var tot mapping
	hidden := 0
	for _, g := range m.smaps {
		tot.Size += g.Size
		tot.Rss += g.Rss
		tot.Pss += g.Pss
		tot.Anon += g.Anon
		tot.Priv += g.Priv
		if g.Rss == 0 {
			hidden++
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t %s\n", g.Size, g.Rss, g.Pss, g.Anon, g.Priv, g.Count, g.Name)
	}
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t\t %s\n", tot.Size, tot.Rss, tot.Pss, tot.Anon, tot.Priv, fmt.Sprintf("total (%d mappings without resident pages not shown)", hidden))
	tw.Flush()
}
