#!/usr/bin/env bash
# Benchmarks agentd's per-container monitor (bin/agent-monitor, which execs
# bin/agent-monitor-lean, driven through its protocol alone) against Debian's
# conmon + runc in the same run:
#
#   - memory: PSS/RSS/anonymous/threads per monitor with 20 containers running
#   - start latency: start -> first line in the container's log file (p50, p90;
#     conmon + runc's p50 is u, the yardstick of every target)
#   - log throughput: 200 MB of 100-byte lines through the monitor into its log
#
# and prints them side by side with the ratio and the targets of DESIGN.md.
# Run it as root from anywhere, after `make build image`:
#
#   sudo hack/bench-monitor.sh [flags of hack/benchmon, e.g. -n 20 -starts 15 -reps 3]
#
# `go run ./hack/benchmon -h` lists the flags. Every container, monitor, conmon,
# mount and cgroup it creates is removed at its end, also on failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=hack/lib-bench.sh
source hack/lib-bench.sh
bench_require_root "namespaces, mounts, cgroups"
bench_require_built bin/agent-monitor bin/agent-monitor-lean _output/busybox.tar
bench_require_peer
bench_require_go

# The work directory: the Go program removes it at its end; the trap only checks
# that nothing of the run is left (a mount keeps it from being removed).
bench_workdir /var/tmp/agentd-bench.XXXXXX

go run ./hack/benchmon -bin bin -image _output/busybox.tar -dir "${workdir}" "$@"
