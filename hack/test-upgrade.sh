#!/usr/bin/env bash
# Upgrade test: pods started by an older agentd survive its replacement by this one.
#
#   hack/test-upgrade.sh [OLD_REF]
#
# Builds OLD_REF (default: the newest tag, else HEAD~1) in a temporary git worktree
# and the current tree, runs pods with the old agentd (live-restore on), stops it,
# starts the new agentd on the same state and checks that every pod was adopted:
# the same container ID and the same process. Needs root. Cleans up after itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$PWD
[[ $(id -u) -eq 0 ]] || { echo "error: run as root (agentd creates namespaces and cgroups)" >&2; exit 1; }
old_ref=${1:-$(git describe --tags --abbrev=0 2>/dev/null || echo HEAD~1)}
old_sha=$(git rev-parse --verify "${old_ref}^{commit}") || { echo "error: no such commit: ${old_ref}" >&2; exit 1; }

work=$(mktemp -d /var/tmp/agentd-upgrade.XXXXXX)
bridge="agupg$((RANDOM % 1000))"
parent="/agentd-upgrade-$$"
agentd_pid=""
cleanup() {
  set +e
  if [[ -n ${agentd_pid} ]] && kill -0 "${agentd_pid}" 2>/dev/null; then kill -KILL "${agentd_pid}"; wait "${agentd_pid}" 2>/dev/null; fi
  # A last agentd without live restore stops the pods it finds.
  if [[ -d ${work}/state/run/monitors ]] && [[ -n $(ls "${work}/state/run/monitors" 2>/dev/null) ]]; then
    rm -f "${work}"/state/manifests/*.yaml
    sed -i 's/"live-restore": true/"live-restore": false/' "${work}/config.json"
    "${top}/bin/agentd" --config-file "${work}/config.json" >>"${work}/agentd.log" 2>&1 &
    local p=$!
    # It stops what it finds before it answers; then SIGTERM ends it.
    for _ in $(seq 300); do AGENT_SOCKET=${work}/state/run/agent.sock "${top}/bin/agentctl" info >/dev/null 2>&1 && break; sleep 0.1; done
    kill -TERM "$p"; wait "$p"
  fi
  grep " ${work}" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  find /sys/fs/cgroup/*"${parent}" -depth -type d -exec rmdir {} + 2>/dev/null
  ip link del "${bridge}" 2>/dev/null
  # NAT rules of pods whose network teardown never ran (agentd killed mid-way).
  iptables-save -t nat | grep -E "^-A POSTROUTING -s 10\.196\.0\." | while read -r rule; do
    chain=$(awk '{print $NF}' <<<"${rule}")
    sh -c "iptables -t nat ${rule/-A /-D }"
    iptables -t nat -F "${chain}"; iptables -t nat -X "${chain}"
  done
  git -C "${top}" worktree remove --force "${work}/old" 2>/dev/null
  git -C "${top}" worktree prune
  rm -rf "${work}"
}
trap cleanup EXIT

echo "== building ${old_ref} (${old_sha:0:12}) and the current tree"
git worktree add --detach "${work}/old" "${old_sha}" >/dev/null
(cd "${work}/old" && make build >/dev/null) || { echo "error: ${old_ref} does not build with 'make build'" >&2; exit 1; }
make build image >/dev/null

mkdir -p "${work}/state/manifests"
chmod 0755 "${work}/state/manifests"
cat >"${work}/config.json" <<JSON
{
  "manifest-dir": "${work}/state/manifests",
  "root": "${work}/state/root",
  "run-dir": "${work}/state/run",
  "log-dir": "${work}/state/logs",
  "cgroup-parent": "${parent}",
  "network": {"bridge": "${bridge}", "subnet": "10.196.0.0/24"},
  "live-restore": true
}
JSON
export AGENT_SOCKET=${work}/state/run/agent.sock
ctl() { "$1/bin/agentctl" "${@:2}"; }

start() { # start BINDIR
  "$1/bin/agentd" --config-file "${work}/config.json" >>"${work}/agentd.log" 2>&1 &
  agentd_pid=$!
  for _ in $(seq 300); do ctl "$1" info >/dev/null 2>&1 && return; sleep 0.1; done
  echo "error: agentd from $1 did not start; its log:" >&2; cat "${work}/agentd.log" >&2; exit 1
}
wait_running() { # BINDIR N
  for _ in $(seq 300); do
    [[ $(ctl "$1" get pods --no-headers 2>/dev/null | awk '$3 == "Running"' | wc -l) -eq $2 ]] && return
    sleep 0.1
  done
  echo "error: pods not Running:" >&2; ctl "$1" get pods >&2; exit 1
}
ids() { ctl "$1" get pods -o json | grep -o '"containerID": *"[^"]*"' | sort; }

ctl "${work}/old" --root "${work}/state/root" image import _output/busybox.tar >/dev/null
for n in 1 2 3; do
  cat >"${work}/state/manifests/.p${n}.tmp" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: upgrade-${n}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: localhost/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do echo tick; sleep 1 & wait; done"]
YAML
  mv "${work}/state/manifests/.p${n}.tmp" "${work}/state/manifests/p${n}.yaml"
done

echo "== old agentd runs 3 pods"
start "${work}/old"
wait_running "${work}/old" 3
before=$(ids "${work}/old")
kill -TERM "${agentd_pid}"; wait "${agentd_pid}" || true
agentd_pid=""

echo "== new agentd adopts them"
start "${top}"
wait_running "${top}" 3
after=$(ids "${top}")
ctl "${top}" get pods
if [[ "${before}" != "${after}" ]]; then
  echo "FAIL: containers were replaced instead of adopted" >&2
  diff <(echo "${before}") <(echo "${after}") >&2 || true
  exit 1
fi
if grep -q "Adopted pod" "${work}/agentd.log"; then
  echo "PASS: ${old_ref} -> $(git describe --always --dirty): 3 pods adopted with the same container IDs"
else
  echo "FAIL: the new agentd did not log any adoption" >&2; exit 1
fi
