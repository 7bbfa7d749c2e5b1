#!/usr/bin/env bash
# Benchmarks agentd's live restore against DESIGN.md's targets: restore of 100 live
# pods <= 0.5 u, of 1000 <= 4 u, where u is conmon + runc's start -> first output
# (p50), measured first in the same run. A real agentd (live-restore on; state in a
# temporary directory under /var/tmp, cgroup parent /agentd-brestore-<pid>, bridge
# agbr<n>, subnet 10.195.0.0/16) runs N pods; then, 3 times per N: SIGTERM agentd,
# exec it again, and time (a) until GET /api/v1/pods lists all N pods Running with
# the same container IDs (adopted) and (b) until its log says "agentd is running".
# Also reported: how long the pods took to start, the monitors' summed PSS and,
# when a count misses its target, where the restore's time goes (the per-monitor
# part from `go test -bench RootRestore ./agent/runtime`, and `perf record` of one
# restore).
#
# Docker 20.10's 0.30 s for 101 containers (about 8.6 u, DESIGN.md) is shown as a
# reference, not measured here. The whole run keeps to -budget (10 min): when 1000
# pods would not fit, it measures fewer (500, or as many as fit) and says so.
#
#   sudo hack/bench-restore.sh [flags of hack/benchrestore, e.g. -counts 100,1000 -reps 3]
#   sudo hack/bench-restore.sh -counts 20 -reps 1 -profile never    # a quick check
#
# `go run ./hack/benchrestore -h` lists the flags. Needs root, `make build image`,
# the CNI plugins, iptables, conmon and runc (hack/install-deps.sh); perf is optional.
# Everything it creates is removed at its end, also on failure or Ctrl-C; what was
# left over is reported (and the run fails).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$PWD

# shellcheck source=hack/lib-bench.sh
source hack/lib-bench.sh
bench_require_root "namespaces, mounts, cgroups, a bridge"
bench_require_built bin/agentd bin/agentctl bin/agent-monitor bin/agent-monitor-lean _output/busybox.tar
bench_require_pod_network
bench_require_peer
bench_require_go
command -v perf >/dev/null 2>&1 || echo "note: perf not found: a restore that misses its target is profiled without it (apt-get install linux-perf)" >&2

work=$(mktemp -d /var/tmp/agentd-brestore.XXXXXX)
parent="/agentd-brestore-$$"
bench_pid=""

# The Go program cleans up after itself. This is the safety net for when it could
# not (killed with SIGKILL, crashed): an agentd with live restore off and no
# manifests stops every monitor it finds; then mounts, cgroups and the bridge.
last_resort() {
  local rc=$?
  set +e
  if [[ -n ${bench_pid} ]] && kill -0 "${bench_pid}" 2>/dev/null; then
    kill -TERM "${bench_pid}"
    wait "${bench_pid}"
  fi
  if [[ ! -d ${work}/w ]]; then rm -rf -- "${work}"; exit "${rc}"; fi
  echo "warning: ${work} is still there: the benchmark did not finish its clean-up; cleaning up" >&2
  local w=${work}/w
  # The agentd it ran, if still running (its binary is under ${w}): SIGTERM.
  local a
  a=$(cat "${w}/agentd.pid" 2>/dev/null || true)
  if [[ -n ${a} ]] && [[ $(readlink "/proc/${a}/exe" 2>/dev/null) == "${w}"/* ]]; then
    kill -TERM "${a}"
    for _ in $(seq 600); do kill -0 "${a}" 2>/dev/null || break; sleep 0.1; done
  fi
  # Monitors of the run are the processes running its copy of the binaries.
  local left=""
  local proc
  for proc in /proc/[0-9]*; do
    [[ $(readlink "${proc}/exe" 2>/dev/null) == "${w}/bin/agent-monitor"* ]] && left=yes && break
  done
  if [[ -n ${left} && -x ${w}/bin/agentd ]]; then
    rm -rf "${w}/manifests" && mkdir -p "${w}/manifests"
    sed -i 's/"live-restore": true/"live-restore": false/' "${w}/config.json"
    "${w}/bin/agentd" --config-file "${w}/config.json" >>"${w}/agentd-last-resort.log" 2>&1 &
    local p=$!
    # It stops what it finds before it answers; then SIGTERM ends it.
    for _ in $(seq 3000); do
      AGENT_SOCKET=${w}/run/agent.sock "${w}/bin/agentctl" info >/dev/null 2>&1 && break
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -TERM "$p" 2>/dev/null
    wait "$p"
  fi
  grep " ${work}[/ ]" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
    [[ -d ${root}${parent} ]] && find "${root}${parent}" -depth -type d -exec rmdir {} + 2>/dev/null
    [[ -d ${root}${parent} ]] && echo "warning: cgroup ${root}${parent} left (processes in it?)" >&2
  done
  bridge=$(grep -o '"bridge": *"[^"]*"' "${w}/config.json" 2>/dev/null | sed 's/.*"\([^"]*\)"$/\1/')
  [[ -n ${bridge} ]] && ip link del "${bridge}" 2>/dev/null
  if grep -q " ${work}[/ ]" /proc/self/mountinfo; then
    echo "warning: still mounted under ${work}; the directory is kept" >&2
  else
    rm -rf -- "${work}"
  fi
  exit "${rc}"
}
trap last_resort EXIT
trap 'exit 130' INT TERM

# A built binary (not `go run`): its pid is the one that owns the run, and it
# does not need the Go toolchain's process in between for signals.
go build -o "${work}.bin" ./hack/benchrestore
mv "${work}.bin" "${work}/benchrestore"
"${work}/benchrestore" -bin "${top}/bin" -image "${top}/_output/busybox.tar" -dir "${work}/w" -cgroup-parent "${parent}" "$@" &
bench_pid=$!
set +e
wait "${bench_pid}"
rc=$?
set -e
bench_pid=""
# It removed ${work}/w; the binary is ours to remove.
if [[ ! -d ${work}/w ]]; then rm -rf -- "${work}"; fi
exit "${rc}"
