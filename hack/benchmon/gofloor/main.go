// Command gofloor is the smallest long-lived Go program: it waits for SIGTERM and
// exits. hack/bench-monitor.sh runs copies of it beside the monitors to show the
// memory every Go process pays before it does anything (the runtime's heap,
// stacks and per-thread state), which bounds what agent-monitor-lean can reach.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	<-c
}
