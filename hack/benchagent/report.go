package main

import (
	"fmt"
	"os"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// Targets and reference numbers of DESIGN.md ("Performance targets").
const (
	latencyTarget  = 40 * time.Millisecond // manifest written -> container output, p50
	burstTarget    = 3 * time.Second       // 100 manifests at once -> all Running
	idleCPUTarget  = 1.0                   // agentd idle CPU with 100 pods, % of one CPU
	pssTargetKB    = 1024                  // monitor PSS per container (DESIGN: with 20 running)
	dockerRunDMs   = 114                   // Docker 20.10, per `docker run -d`: DESIGN.md's number, not measured here
	dockerShimPSSM = 11.5                  // containerd's shim PSS, MB: DESIGN.md's number
	conmonPSSM     = 0.5                   // conmon PSS, MB: DESIGN.md's number
)

type results struct {
	o         *options
	startup   time.Duration
	lat       *latResult
	burst     *burstResult
	idle      *idleResult
	stop      *stopResult
	loadEnd   string
	agentdLog string
}

// Short names for the statistics helpers used throughout the report.
var (
	ms      = benchutil.Millis
	pct     = benchutil.Percentile
	verdict = benchutil.Verdict
	msList  = benchutil.MsList
)

func (r *results) print() {
	fmt.Println("== results: agentd, this run. No peer runs in this script: the last column holds DESIGN.md's")
	fmt.Println("   reference numbers for Docker 20.10 / conmon, NOT measured here (conmon + runc is measured by hack/bench-monitor.sh)")
	tw := benchutil.NewTable(os.Stdout)
	row := tw.Row
	row("metric", "agentd", "target", "verdict", "reference (not measured here)")
	row("------", "------", "------", "-------", "----------------------------")
	if l := r.lat; l != nil {
		p50, p90 := pct(l.detect, 50), pct(l.detect, 90)
		row(fmt.Sprintf("manifest written -> container output, p50 (n=%d)", len(l.detect)), fmt.Sprintf("%.1f ms", ms(p50)),
			fmt.Sprintf("<= %.0f ms", ms(latencyTarget)), verdict(p50 <= latencyTarget),
			fmt.Sprintf("docker run -d: %d ms (agentd = %.2fx)", dockerRunDMs, ms(p50)/dockerRunDMs))
		row("manifest written -> container output, p90", fmt.Sprintf("%.1f ms", ms(p90)), "", "", "")
	}
	if b := r.burst; b != nil {
		row(fmt.Sprintf("%d manifests at once -> all Running", b.n), fmt.Sprintf("%.2f s", b.all.Seconds()),
			fmt.Sprintf("<= %.0f s", burstTarget.Seconds()), verdict(b.all <= burstTarget),
			fmt.Sprintf("%d x docker run -d in sequence: %.1f s", b.n, float64(b.n)*dockerRunDMs/1000))
	}
	if i := r.idle; i != nil {
		ap := i.pct(i.agentdTicks)
		row(fmt.Sprintf("agentd idle CPU, %d pods, %.0f s", i.monitors, i.window.Seconds()), fmt.Sprintf("%.2f %% of a CPU", ap),
			fmt.Sprintf("< %.0f %%", idleCPUTarget), verdict(ap < idleCPUTarget), "")
		row(fmt.Sprintf("monitors' idle CPU, all %d together", i.monitors), fmt.Sprintf("%.2f %% of a CPU", i.pct(i.monTicks)), "", "", "")
		per := float64(i.monPss) / float64(i.monitors)
		row(fmt.Sprintf("monitors' PSS, all %d together", i.monitors), fmt.Sprintf("%.1f MiB", float64(i.monPss)/1024), "", "", "")
		row("monitor PSS, per monitor", fmt.Sprintf("%.2f MiB", per/1024),
			"<= 1 MiB (DESIGN: with 20 running)", verdict(per <= pssTargetKB),
			fmt.Sprintf("conmon ~%.1f MB, containerd shim %.1f MB", conmonPSSM, dockerShimPSSM))
	}
	if s := r.stop; s != nil {
		row(fmt.Sprintf("SIGTERM -> agentd exited, %d pods stopped", s.pods), fmt.Sprintf("%.2f s", s.agentdExit.Seconds()),
			fmt.Sprintf("none (grace %d s; containers exit on TERM)", r.o.grace), "-", "")
		row("SIGTERM -> no monitor process left", fmt.Sprintf("%.2f s", s.monitorsEnd.Seconds()), "", "", "")
	}
	tw.Flush()

	fmt.Println()
	fmt.Println("== details")
	fmt.Printf("agentd start (exec -> API answers): %.0f ms\n", ms(r.startup))
	if l := r.lat; l != nil {
		fmt.Printf("latency, detected by us (inotify on the log file), sorted, ms: %s\n", msList(l.detect))
		if len(l.stamp) > 0 {
			fmt.Printf("latency by the log record's own timestamp (when the monitor read the line): p50 %.1f ms, p90 %.1f ms\n",
				ms(pct(l.stamp, 50)), ms(pct(l.stamp, 90)))
		}
		if len(l.warm) > 0 {
			fmt.Printf("warm-up pod(s), not counted: %s ms\n", msList(l.warm))
		}
		fmt.Printf("manifest removed -> pod gone from the API (grace %d s, container exits on TERM): p50 %.0f ms, p90 %.0f ms\n",
			r.o.grace, ms(pct(l.remove, 50)), ms(pct(l.remove, 90)))
	}
	if b := r.burst; b != nil {
		fmt.Printf("burst: writing %d manifests took %.1f ms; all %d listed by the API after %.0f ms\n", b.n, ms(b.write), b.n, ms(b.firstListing))
		fmt.Printf("burst: pods seen Running (poll every %v): first %.0f ms, p50 %.0f ms, p90 %.0f ms, last %.0f ms\n", b.pollEvery,
			ms(pct(b.running, 1)), ms(pct(b.running, 50)), ms(pct(b.running, 90)), ms(pct(b.running, 100)))
		if b.logged > 0 {
			fmt.Printf("burst: last container's \"ready\" record (log timestamp) %.0f ms after the write started\n", ms(b.logged))
		}
		fmt.Printf("burst: CPU from the write to all Running: %s\n", b.cpu)
		fmt.Printf("burst: %d API polls, median GET /api/v1/pods %.1f ms\n", b.polls, ms(b.apiCallMedian))
	}
	if i := r.idle; i != nil {
		fmt.Printf("idle: window %.2f s; agentd %d ticks (1 tick = 10 ms CPU), ~%.1f context switches/s over its threads\n",
			i.window.Seconds(), i.agentdTicks, float64(i.agentdCtxSw)/i.window.Seconds())
		fmt.Printf("idle: agentd RSS %.1f MiB, PSS %.1f MiB, %d threads\n", float64(i.agentdMem.Rss)/1024, float64(i.agentdMem.Pss)/1024, i.agentdMem.Threads)
		fmt.Printf("idle: monitors %d (by executable: %v), %d ticks together, RSS %.1f MiB together, %.1f threads each\n",
			i.monitors, i.monExes, i.monTicks, float64(i.monRss)/1024, float64(i.monThreads)/float64(i.monitors))
		fmt.Printf("idle: load average before %s, after %s\n", i.loadBefore, i.loadAfter)
	}
	if r.o.breakdown {
		if r.lat != nil {
			breakdown("of manifest written -> output, one pod at a time", r.agentdLog, r.lat.pods)
		}
		if r.burst != nil {
			breakdown(fmt.Sprintf("of the %d pods written at once", r.burst.n), r.agentdLog, r.burst.pods)
		}
	}
	if s := r.stop; s != nil {
		fmt.Printf("stop: %d monitor(s) still running when agentd exited; machine CPU from SIGTERM to agentd's exit: %.0f %% busy\n",
			s.monitorsOut, float64(s.cpu.hostBusy)/float64(max(1, s.cpu.hostTotal))*100)
		if ts := stopTimes(r.agentdLog, s.sigterm); len(ts) > 0 {
			fmt.Printf("stop: agentd logged \"Pod stopped\" (after monitor stop, CNI DEL, sandbox removal) for %d pods: first %.0f ms, p50 %.0f ms, last %.0f ms after SIGTERM\n",
				len(ts), ms(pct(ts, 1)), ms(pct(ts, 50)), ms(pct(ts, 100)))
		}
	}
	fmt.Printf("load average at end: %s\n", r.loadEnd)
}
