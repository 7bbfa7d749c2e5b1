package main

import (
	"fmt"
	"strings"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

type proc struct {
	pid  int
	cmd  string
	ours bool // in our cgroup parent or running a binary of our work dir: safe to kill
}

// processesOf lists the processes that belong to this run: in a cgroup under
// parent, or with dir in their command line, root or working directory (monitors
// name their state directory; containers' roots are under it). We ourselves and
// our ancestors are skipped.
func processesOf(dir, parent string) []proc {
	var out []proc
	for _, p := range benchutil.Processes(benchutil.Ancestors()) {
		if !benchutil.Alive(p.Pid) {
			continue
		}
		inParent := p.InCgroup(parent)
		if inParent || p.Uses(dir) {
			cmd := p.Cmd
			if cmd == "" {
				cmd = "[" + benchutil.ExeName(p.Pid) + "]"
			}
			out = append(out, proc{p.Pid, cmd, inParent || strings.HasPrefix(p.Exe, dir+"/") || strings.HasPrefix(p.Root, dir+"/")})
		}
	}
	return out
}

// cpuWindow is what the machine and agentd spent over a span of time.
type cpuWindow struct {
	hostBusy, hostTotal int64 // ticks, all CPUs
	agentd              int64 // ticks
}

func startCPUWindow(agentdPid int) cpuWindow {
	var w cpuWindow
	c := benchutil.ReadCPUStat()
	w.hostBusy, w.hostTotal = c.Busy(), c.Total
	w.agentd, _ = benchutil.CPUTicks(agentdPid)
	return w
}

// end returns the differences since w; agentd's is 0 when it cannot be read
// (it exited).
func (w cpuWindow) end(agentdPid int) cpuWindow {
	c := benchutil.ReadCPUStat()
	a, err := benchutil.CPUTicks(agentdPid)
	if err != nil {
		a = w.agentd
	}
	return cpuWindow{hostBusy: c.Busy() - w.hostBusy, hostTotal: c.Total - w.hostTotal, agentd: a - w.agentd}
}

func (w cpuWindow) String() string {
	if w.hostTotal <= 0 {
		return "?"
	}
	const hz = benchutil.ClockTicks
	return fmt.Sprintf("machine %.0f %% busy (%.1f CPU-s of %.1f), agentd itself %.2f CPU-s",
		float64(w.hostBusy)/float64(w.hostTotal)*100, float64(w.hostBusy)/hz, float64(w.hostTotal)/hz, float64(w.agentd)/hz)
}
