package main

import (
	"fmt"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

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
