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

if [[ $(id -u) -ne 0 ]]; then
  echo "error: the benchmark needs root (namespaces, mounts, cgroups, a bridge); run: sudo $0" >&2
  exit 1
fi

missing_build=()
for f in bin/agentd bin/agentctl bin/agent-monitor bin/agent-monitor-lean _output/busybox.tar; do
  [[ -e ${f} ]] || missing_build+=("${f}")
done
if [[ ${#missing_build[@]} -gt 0 ]]; then
  echo "error: missing ${missing_build[*]}; build them first with:" >&2
  echo "  make build image" >&2
  exit 1
fi

missing_deps=()
for c in ip iptables; do
  command -v "${c}" >/dev/null 2>&1 || missing_deps+=("${c}")
done
for p in bridge host-local; do
  [[ -x /usr/lib/cni/${p} || -x /opt/cni/bin/${p} ]] || missing_deps+=("CNI plugin ${p}")
done
if [[ ${#missing_deps[@]} -gt 0 ]]; then
  echo "error: missing ${missing_deps[*]} (agentd's pod network needs them); install with:" >&2
  echo "  sudo hack/install-deps.sh" >&2
  exit 1
fi

if ! command -v go >/dev/null 2>&1; then
  if [[ -x /usr/local/go/bin/go ]]; then
    export PATH="${PATH}:/usr/local/go/bin"
  else
    echo "error: 'go' not found in PATH; install Go (the version go.mod names) and re-run $0" >&2
    exit 1
  fi
fi

# The work directory: the Go program removes it at its end; this trap only makes
# sure it is gone unless something is still mounted under it.
workdir=$(mktemp -d /var/tmp/agentd-bench-agent.XXXXXX)
check_left() {
  local rc=$?
  if grep -q " ${workdir}[/ ]" /proc/self/mountinfo; then
    echo "warning: still mounted under ${workdir}:" >&2
    grep " ${workdir}[/ ]" /proc/self/mountinfo | awk '{print "  " $5}' >&2
    echo "  the directory is kept; unmount them (umount -l) and remove it" >&2
  elif [[ -d ${workdir} ]]; then
    rm -rf -- "${workdir}"
  fi
  exit "${rc}"
}
trap check_left EXIT

go run ./hack/benchagent -bin bin -image _output/busybox.tar -dir "${workdir}" "$@"
