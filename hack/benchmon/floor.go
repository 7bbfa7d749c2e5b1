package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// measureGoFloor builds ./hack/benchmon/gofloor and runs n copies of it with
// GOMAXPROCS=1, as agent-monitor-lean runs, and reads their memory as
// measureMemory reads the monitors'.
func measureGoFloor(ctx context.Context, dir string, n int, settle time.Duration) (_ *memResult, err error) {
	bin := filepath.Join(dir, "gofloor")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./hack/benchmon/gofloor")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./hack/benchmon/gofloor (run from the module's root): %w: %s", err, out)
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM) // what gofloor waits for: it exits 0
			if werr := p.Wait(); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}()
	for i := 0; i < n; i++ {
		p := exec.Command(bin)
		p.Env = append(os.Environ(), "GOMAXPROCS=1")
		if err := p.Start(); err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := &memResult{name: "empty Go program"}
	for _, p := range procs {
		m, err := benchutil.ReadMem(p.Process.Pid)
		if err != nil {
			return nil, err
		}
		res.per = append(res.per, m)
	}
	fmt.Printf("   PSS per process %.0f kB, RSS %.0f kB, anonymous %.0f kB\n",
		res.avg(n, func(m benchutil.MemStat) int64 { return m.Pss }), res.avg(n, func(m benchutil.MemStat) int64 { return m.Rss }),
		res.avg(n, func(m benchutil.MemStat) int64 { return m.Anonymous }))
	return res, nil
}
