package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"time"
)

// With -breakdown agentd runs with log-level debug, which logs each action it
// applies ("Applying action" action="CreateSandbox default/<pod>: ..."), with
// millisecond timestamps. A pod's start then splits into:
//
//	write -> CreateSandbox   the manifest source (inotify, debounce, parse) and the plan
//	CreateSandbox -> StartContainer   sandbox: namespaces, CNI bridge + host-local + iptables
//	StartContainer -> "ready"   agent-monitor start, libcontainer create/start, the
//	                            container's sh, the monitor's log write
//
// (the last from the log record's own timestamp, so our detection is not in it).

// podTimes are the moments of one pod's start.
type podTimes struct {
	written, sandbox, start, ready time.Time
}

var actionRE = regexp.MustCompile(`^time=(\S+) .*msg="Applying action" action="(CreateSandbox|StartContainer) [^/]+/([^: ]+)`)

// actionTimes reads agentd's log: the first CreateSandbox and StartContainer of each pod.
func actionTimes(path string) (map[string]*podTimes, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]*podTimes{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := actionRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		pt := out[m[3]]
		if pt == nil {
			pt = &podTimes{}
			out[m[3]] = pt
		}
		switch m[2] {
		case "CreateSandbox":
			if pt.sandbox.IsZero() {
				pt.sandbox = t
			}
		case "StartContainer":
			if pt.start.IsZero() {
				pt.start = t
			}
		}
	}
	return out, sc.Err()
}

// breakdown prints the split of the pods' start times: pods maps a pod name to
// its write and "ready" times (the rest comes from agentd's log).
func breakdown(title, logPath string, pods map[string]*podTimes) {
	acts, err := actionTimes(logPath)
	if err != nil {
		fmt.Printf("breakdown %s: %v\n", title, err)
		return
	}
	var src, sb, ctr []time.Duration
	missing := 0
	for name, p := range pods {
		a := acts[name]
		if a == nil || a.sandbox.IsZero() || a.start.IsZero() || p.ready.IsZero() {
			missing++
			continue
		}
		src = append(src, a.sandbox.Sub(p.written))
		sb = append(sb, a.start.Sub(a.sandbox))
		ctr = append(ctr, p.ready.Sub(a.start))
	}
	if len(src) == 0 {
		fmt.Printf("breakdown %s: no \"Applying action\" lines in agentd's log (it needs -breakdown, i.e. log-level debug)\n", title)
		return
	}
	line := func(name string, ds []time.Duration) string {
		return fmt.Sprintf("  %-62s p50 %6.1f ms  p90 %6.1f ms  max %6.1f ms", name, ms(pct(ds, 50)), ms(pct(ds, 90)), ms(pct(ds, 100)))
	}
	fmt.Printf("breakdown %s (%d pods; agentd's log has ms timestamps, so each part is +-1 ms):\n", title, len(src))
	fmt.Println(line("write -> CreateSandbox (manifest source, plan)", src))
	fmt.Println(line("CreateSandbox -> StartContainer (sandbox, CNI, iptables)", sb))
	fmt.Println(line("StartContainer -> \"ready\" record (monitor, libcontainer, sh)", ctr))
	if missing > 0 {
		fmt.Printf("  (%d pods without all times)\n", missing)
	}
}

var stoppedRE = regexp.MustCompile(`^time=(\S+) .*msg="Pod stopped" .*reason="agentd stopping"`)

// stopTimes are the times, after since, at which agentd logged "Pod stopped" for a
// pod it stopped because it was stopping (info level: always logged).
func stopTimes(path string, since time.Time) []time.Duration {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := stoppedRE.FindStringSubmatch(sc.Text()); m != nil {
			// Millisecond timestamps: a pod stopped within the SIGTERM's millisecond shows as 0.
			if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil && !t.Before(since.Truncate(time.Millisecond)) {
				out = append(out, max(0, t.Sub(since)))
			}
		}
	}
	return out
}
