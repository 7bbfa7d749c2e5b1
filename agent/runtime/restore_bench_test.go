package runtime

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
)

// BenchmarkRootRestore measures what agentd's restore costs per monitor in this
// package, with AGENTD_BENCH_MONITORS (default 20) live monitors of sleeping
// containers, one pod each, started once for all of its parts:
//
//   - List: every monitor, verified, as the restore lists them (ns/monitor is
//     the time of one List over the monitors)
//   - Inspect: one monitor: its config, journal and lock, and the handshake
//   - Handshake: connect to the control socket, Hello, HelloReply
//
// It needs root and the built binaries, like the root tests (testutil.RequiresRoot):
//
//	sudo env AGENTD_TEST_BIN=$PWD/bin AGENTD_TEST_IMAGE=$PWD/_output/busybox.tar \
//	  AGENTD_BENCH_MONITORS=100 go test -run '^$' -bench RootRestore ./agent/runtime
//
// hack/bench-restore.sh times the whole restore of a real agentd; this is the
// part of it that is this package's.
func BenchmarkRootRestore(b *testing.B) {
	h := newHarness(b)
	n := 20
	if v := os.Getenv("AGENTD_BENCH_MONITORS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("AGENTD_BENCH_MONITORS=%q: want a positive number", v)
		}
	}
	ids := make([]string, n)
	for i := range ids {
		cfg, _ := h.mustStart(h.pod(podYAML(fmt.Sprintf("restore-%04d", i), "Always", "sleep 3600")), 0)
		ids[i] = cfg.ID
	}
	ctx := context.Background()
	alive := func(b *testing.B, m *Monitor) {
		if m.State != MonitorAlive {
			b.Fatalf("monitor %s is %s (%s), not Alive", m.ID, m.State, m.Reason)
		}
	}
	b.Run(fmt.Sprintf("List/monitors=%d", n), func(b *testing.B) {
		for b.Loop() {
			ms, err := h.rt.List(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(ms) != n {
				b.Fatalf("List found %d monitors, want %d", len(ms), n)
			}
			for _, m := range ms {
				alive(b, m)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/monitor")
	})
	b.Run("Inspect", func(b *testing.B) {
		i := 0
		for b.Loop() {
			alive(b, h.rt.Inspect(ctx, ids[i%n]))
			i++
		}
	})
	b.Run("Handshake", func(b *testing.B) {
		i := 0
		for b.Loop() {
			c, _, err := h.rt.dial(ctx, ids[i%n])
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
			i++
		}
	})
}
