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
	lat      []*latResult  // agent, conmon
	tput     []*tputResult // agent, conmon

	stops, stopEarly int64 // agent: runtime.Stop calls, and those that returned before the monitor was gone
}

const pssTargetKB = 1024 // DESIGN: monitor PSS ≤ 1 MB per container with 20 running

func (r *results) print(o *options) {
	if o.only != "" {
		fmt.Println("== one kind of monitor measured (-only): no comparison table")
	} else {
		r.table()
	}
	r.raw(o)
}

func (r *results) table() {
	fmt.Println("== results (ratio = agent-monitor / conmon+runc; MiB = 1024 kB from /proc; MB/s = 10^6 bytes/s)")
	tw := benchutil.NewTable(os.Stdout)
	tw.Row("metric", "agent-monitor", "conmon+runc", "ratio", "target")
	tw.Row("------", "-------------", "-----------", "-----", "------")
	row := func(metric, a, c string, ratio float64, target string) {
		rs := "-"
		if ratio > 0 {
			rs = fmt.Sprintf("%.2fx", ratio)
		}
		tw.Row(metric, a, c, rs, target)
	}
	if len(r.mem) == 2 {
		a, c := r.mem[0], r.mem[1]
		kb := func(m *memResult, f func(benchutil.MemStat) int64) float64 { return m.avg(r.n, f) }
		mib := func(v float64) string { return fmt.Sprintf("%.2f MiB", v/1024) }
		pss := func(m benchutil.MemStat) int64 { return m.Pss }
		ap, cp := kb(a, pss), kb(c, pss)
		row(fmt.Sprintf("PSS per monitor (%d running)", r.n), mib(ap), mib(cp), ap/cp, "<= 1 MiB: "+benchutil.Verdict(ap <= pssTargetKB)+" (conmon ~0.5, containerd shim ~11.5)")
		for _, m := range []struct {
			name string
			f    func(benchutil.MemStat) int64
		}{
			{"RSS per monitor", func(m benchutil.MemStat) int64 { return m.Rss }},
			{"USS (private) per monitor", benchutil.MemStat.USS},
			{"anonymous (Anonymous:) per monitor", func(m benchutil.MemStat) int64 { return m.Anonymous }},
			{"Pss_Anon per monitor", func(m benchutil.MemStat) int64 { return m.PssAnon }},
			{"Pss_File per monitor", func(m benchutil.MemStat) int64 { return m.PssFile }},
		} {
			av, cv := kb(a, m.f), kb(c, m.f)
			row(m.name, mib(av), mib(cv), ratio(av, cv), "")
		}
		thr := func(m benchutil.MemStat) int64 { return int64(m.Threads) }
		at, ct := kb(a, thr), kb(c, thr)
		row("threads per monitor", fmt.Sprintf("%.1f", at), fmt.Sprintf("%.1f", ct), ratio(at, ct), "one OS thread where possible")
		row("monitor processes per container", fmt.Sprintf("%.1f", float64(len(a.per))/float64(r.n)), fmt.Sprintf("%.1f", float64(len(c.per))/float64(r.n)), 0, "")
	}
	if len(r.lat) == 2 {
		a, c := r.lat[0], r.lat[1]
		for _, p := range []int{50, 90} {
			av, cv := pct(a.toLine, p), pct(c.toLine, p)
			row(fmt.Sprintf("start -> first log line p%d", p), ms(av), ms(cv), ratio(float64(av), float64(cv)),
				map[int]string{50: "agentd manifest->output <= 40 ms p50 (whole path); docker run -d 114 ms", 90: ""}[p])
		}
		av, cv := pct(a.toReturn, 50), pct(c.toReturn, 50)
		row("start call returned p50", ms(av), ms(cv), ratio(float64(av), float64(cv)), "runtime.Start / conmon+`runc start`")
	}
	if len(r.tput) == 2 {
		a, c := r.tput[0], r.tput[1]
		med := func(t *tputResult) time.Duration {
			var ds []time.Duration
			for _, run := range t.runs {
				ds = append(ds, run.took)
			}
			return pct(ds, 50)
		}
		av, cv := mbps(r.logBytes, med(a)), mbps(r.logBytes, med(c))
		row(fmt.Sprintf("log throughput, %d MB, median of %d", r.logBytes/1e6, len(a.runs)),
			fmt.Sprintf("%.0f MB/s", av), fmt.Sprintf("%.0f MB/s", cv), av/cv, ">= conmon's: "+benchutil.Verdict(av >= cv))
		cpu := func(t *tputResult) time.Duration {
			var ds []time.Duration
			for _, run := range t.runs {
				ds = append(ds, run.cpu)
			}
			return pct(ds, 50)
		}
		ac, cc := cpu(a), cpu(c)
		row(fmt.Sprintf("monitor CPU (user+sys) for the %d MB, median", r.logBytes/1e6), ms(ac), ms(cc), ratio(float64(ac), float64(cc)), "lower is better; 10 ms ticks")
		aa, ca := mbps(r.logBytes, a.alone.inner), mbps(r.logBytes, c.alone.inner)
		row("container alone (to /dev/null, inside)", fmt.Sprintf("%.0f MB/s", aa), fmt.Sprintf("%.0f MB/s", ca), aa/ca, "the ceiling: writer without a log")
	}
	tw.Flush()
}

func (r *results) raw(o *options) {
	pssMissed := false
	for _, m := range r.mem {
		if len(m.smaps) > 0 && m.avg(r.n, func(m benchutil.MemStat) int64 { return m.Pss }) > pssTargetKB {
			pssMissed = true
		}
	}
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
	if r.stops > 0 {
		fmt.Printf("agent-monitor stops: runtime.Stop returned while the monitor process still ran in %d of %d stops\n", r.stopEarly, r.stops)
		fmt.Println("  (it takes the zombie thread-group leader of the lean -> `agent-monitor next` exec for an exited process;")
		fmt.Println("   the bench waits until no thread is left before runtime.Remove, else Remove races `next`: overlay mount and cgroups leak)")
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
