#!/usr/bin/env bash
# Benchmarks a real agentd (bin/agentd with its own config file, state under a
# temporary directory in /var/tmp, cgroup parent /agentd-bench-<pid>, bridge
# agbench<n>, subnet 10.197.0.0/16) against the targets of DESIGN.md:
#
#   1. manifest written -> container output (p50, p90 over 20 pods, one at a time)
#   2. 100 manifests written at once -> all Running (agentd's API)
#   3. agentd's idle CPU with those 100 pods; the monitors' CPU and PSS
#   4. SIGTERM with live restore off -> agentd has stopped all 100 pods
#
# No peer is run: the table shows DESIGN.md's Docker 20.10 numbers as reference
# constants, labelled as not measured here (hack/bench-monitor.sh runs conmon + runc).
# Run it as root from anywhere, after `make build image`:
#
#   sudo hack/bench-agent.sh [flags of hack/benchagent, e.g. -starts 20 -burst 100 -idle 30s]
#
# `go run ./hack/benchagent -h` lists the flags. Every pod, monitor, mount, cgroup,
# nat rule and the bridge it creates are removed at its end, also on failure or
# Ctrl-C; whatever was left over is reported (and the run fails).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=hack/lib-bench.sh
source hack/lib-bench.sh
bench_require_root "namespaces, mounts, cgroups, a bridge"
bench_require_built bin/agentd bin/agentctl bin/agent-monitor bin/agent-monitor-lean _output/busybox.tar
bench_require_pod_network
bench_require_go

# The work directory: the Go program removes it at its end; the trap only makes
# sure it is gone unless something is still mounted under it.
bench_workdir /var/tmp/agentd-bench-agent.XXXXXX

go run ./hack/benchagent -bin bin -image _output/busybox.tar -dir "${workdir}" "$@"
