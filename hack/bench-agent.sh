#!/usr/bin/env bash
# Benchmarks a real agentd (bin/agentd with its own config file, state under a
# temporary directory in /var/tmp, cgroup parent /agentd-bench-<pid>, bridge
# agbench<n>, subnet 10.197.0.0/16) against the targets of DESIGN.md, each beside
# the yardstick u (conmon + runc's start -> first output, p50), measured first in
# the same run:
#
#   0. agentd's Go package init; `agentctl version` against a hello-world Go binary
#   1. manifest written -> container output (p50, p90 over 20 pods, one at a time)
#   1b. the same when the image must be pulled first (imagePullPolicy Always) from a
#      registry on a loopback port (go-containerregistry's, in the Go program), each
#      pod with a copy of the test image whose layers agentd does not have (-pull-starts)
#   2. 100 manifests written at once -> all Running (agentd's API)
#   3. agentd's idle CPU with those 100 pods; the monitors' CPU and PSS
#   4. SIGTERM with live restore off -> agentd has stopped all 100 pods
#
# Docker's numbers are DESIGN.md's references, labelled as not measured here.
# Run it as root from anywhere, after `make build image`:
#
#   sudo hack/bench-agent.sh [flags of hack/benchagent, e.g. -starts 20 -burst 100 -idle 30s -u-starts 15]
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
bench_require_peer
bench_require_go

# The work directory: the Go program removes it at its end; the trap only makes
# sure it is gone unless something is still mounted under it.
bench_workdir /var/tmp/agentd-bench-agent.XXXXXX

go run ./hack/benchagent -bin bin -image _output/busybox.tar -dir "${workdir}" "$@"
