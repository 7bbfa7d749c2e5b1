#!/usr/bin/env bash
# Upgrade test: pods started by the previous landed agentd survive its replacement
# by this one, and their monitors — still the old binaries — keep working with the
# new agent-monitor, as after a package upgrade that replaces the binaries in place.
#
#   hack/test-upgrade.sh [OLD_REF]
#
# OLD_REF defaults to the commit in hack/upgrade-from (the previous landed commit:
# bump it when a release lands), else HEAD~1. It is built from `git archive` (no
# worktree is added to the repository; a shallow clone fetches the one commit),
# once: the binaries are kept in _output/upgrade-from/<commit>/.
#
# The new binaries are $AGENTD_TEST_BIN (default: `make build` here), the image
# $AGENTD_TEST_IMAGE (default: _output/busybox.tar, `make image`). Both versions
# run from one directory, <work>/bin, into which the new binaries are moved over
# the old ones while the old monitors run. It checks, in order:
#   1. the old agentd runs 3 pods (live restore on); it is stopped;
#   2. the new agentd adopts them: the same container IDs, "Adopted pod";
#   3. exec into a container works through its old monitor (old lean monitor,
#      new `agent-monitor exec`);
#   4. a container that exits is restarted by its old monitor, which execs the new
#      agent-monitor (`next`, with the old handoff) and then the new lean monitor;
#   5. the new agentd stops a pod through its old monitor;
#   6. the adopted container's runs stay in its monitor's state directory, where
#      the old agentd's config put them; a new pod's go under root.
# Needs root; `make test` and `make test-integration` run it (TestE2EUpgrade).
# Everything it starts is stopped and removed by pid, and its mounts, cgroups,
# bridge and iptables rules are removed, whatever happens.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$PWD
started=${SECONDS}
[[ $(id -u) -eq 0 ]] || { echo "error: run as root (agentd creates namespaces and cgroups)" >&2; exit 1; }
git rev-parse --git-dir >/dev/null 2>&1 || { echo "error: ${top} is not a git checkout: the old version is built from its history" >&2; exit 1; }

# --- the old version ---------------------------------------------------------------
default_ref() {
  local ref
  ref=$(grep -v '^#' hack/upgrade-from 2>/dev/null | awk 'NF {print $1; exit}')
  echo "${ref:-HEAD~1}"
}
old_ref=${1:-$(default_ref)}
if ! old_sha=$(git rev-parse --verify --quiet "${old_ref}^{commit}"); then
  # A shallow clone (CI) lacks it: fetch that one commit.
  if [[ $(git rev-parse --is-shallow-repository) == true ]] && [[ ${old_ref} =~ ^[0-9a-f]{7,40}$ ]]; then
    git fetch --quiet --depth 1 origin "${old_ref}" 2>/dev/null || true
  fi
  old_sha=$(git rev-parse --verify --quiet "${old_ref}^{commit}") || {
    echo "error: no such commit: ${old_ref}; fetch the history (git fetch --unshallow) or name another ref: $0 REF" >&2
    exit 1
  }
fi
old_bin=${top}/_output/upgrade-from/${old_sha}/bin
if [[ ! -x ${old_bin}/agentd ]]; then
  echo "== building ${old_ref} (${old_sha:0:12})"
  src=$(mktemp -d /var/tmp/agentd-upgrade-src.XXXXXX)
  trap 'rm -rf "${src}"' EXIT
  git archive "${old_sha}" | tar -x -C "${src}"
  make -C "${src}" build VERSION="upgrade-from-${old_sha:0:12}" >"${src}.log" 2>&1 ||
    { cat "${src}.log" >&2; rm -f "${src}.log"; echo "error: ${old_ref} does not build with 'make build'" >&2; exit 1; }
  rm -f "${src}.log"
  mkdir -p "${old_bin%/bin}"
  rm -rf "${old_bin}"
  mv "${src}/bin" "${old_bin}"
  rm -rf "${src}"
  trap - EXIT
fi

# --- the new version ---------------------------------------------------------------
new_bin=${AGENTD_TEST_BIN:-}
if [[ -z ${new_bin} ]]; then
  make build >/dev/null
  new_bin=${top}/bin
fi
image=${AGENTD_TEST_IMAGE:-${top}/_output/busybox.tar}
[[ -f ${image} ]] || make image >/dev/null
binaries=(agentd agentctl agent-monitor agent-monitor-lean)
for b in "${binaries[@]}"; do
  [[ -x ${new_bin}/${b} ]] || { echo "error: ${new_bin}/${b} is missing: run make build" >&2; exit 1; }
done

# --- the host ------------------------------------------------------------------------
work=$(mktemp -d /var/tmp/agentd-upgrade.XXXXXX)
bin=${work}/bin
bridge="agupg$(($$ % 100000))"
subnet_prefix=10.196.0.
parent="/agentd-upgrade-$$"
export AGENT_SOCKET=${work}/state/run/agent.sock
agentd_pid=""

# cgroups lists the cgroup directories under ${parent}, in every hierarchy.
cgroups() { find /sys/fs/cgroup/ -maxdepth 2 -path "*${parent}" -type d 2>/dev/null; }
# ours lists the pids of processes that run a binary from ${bin} (agentd, monitors,
# exec helpers; after an upgrade old ones show " (deleted)") or sit in a cgroup
# under ${parent} (containers).
ours() {
  local p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "${p}/exe" 2>/dev/null) || continue
    [[ ${exe} == "${bin}/"* ]] && echo "${p#/proc/}"
  done
  cgroups | while read -r d; do find "${d}" -name cgroup.procs -exec cat {} + 2>/dev/null; done
  return 0
}
# monitors prints the executables of the running lean monitors, one a line.
monitors() {
  local p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "${p}/exe" 2>/dev/null) || continue
    [[ ${exe} == "${bin}/agent-monitor-lean"* ]] && echo "${exe}"
  done
  return 0
}

cleanup() {
  local rc=$? left=() p
  set +e
  if [[ -n ${agentd_pid} ]] && kill -0 "${agentd_pid}" 2>/dev/null; then kill -KILL "${agentd_pid}"; wait "${agentd_pid}" 2>/dev/null; fi
  # An agentd without live restore stops the pods it finds, gracefully.
  if [[ -d ${work}/state/run/monitors ]] && [[ -n $(ls "${work}/state/run/monitors" 2>/dev/null) ]] && [[ -x ${bin}/agentd ]]; then
    rm -f "${work}"/state/manifests/*.yaml
    sed -i 's/"live-restore": true/"live-restore": false/' "${work}/config.json"
    "${bin}/agentd" --config-file "${work}/config.json" >>"${work}/agentd.log" 2>&1 &
    p=$!
    for _ in $(seq 300); do "${bin}/agentctl" info >/dev/null 2>&1 && break; kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  fi
  # Whatever still runs (a failed stop): by pid, until none is left.
  for _ in $(seq 50); do
    mapfile -t left < <(ours | sort -u)
    [[ ${#left[@]} -eq 0 ]] && break
    kill -KILL "${left[@]}" 2>/dev/null
    sleep 0.1
  done
  [[ ${#left[@]} -gt 0 ]] && echo "error: processes left: ${left[*]}" >&2 && rc=1
  grep " ${work}" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  cgroups | while read -r d; do find "${d}" -depth -type d -delete 2>/dev/null; done
  ip link del "${bridge}" 2>/dev/null
  # NAT rules of pods whose network teardown never ran (agentd killed mid-way), and
  # the filter rules that keep the bridge's pods off the host's ports.
  iptables-save -t nat | grep -E "^-A POSTROUTING -s ${subnet_prefix//./\\.}" | while read -r rule; do
    chain=$(awk '{print $NF}' <<<"${rule}")
    sh -c "iptables -t nat ${rule/-A /-D }"
    iptables -t nat -F "${chain}"
    iptables -t nat -X "${chain}"
  done
  for cmd in iptables ip6tables; do
    command -v "${cmd}" >/dev/null || continue
    "${cmd}" -t filter -S INPUT 2>/dev/null | grep -E -- "-i ${bridge} .*-j AGENTD-HOST-" | while read -r rule; do
      chain=$(awk '{print $NF}' <<<"${rule}")
      sh -c "${cmd} -t filter ${rule/-A /-D }"
      "${cmd}" -t filter -F "${chain}"
      "${cmd}" -t filter -X "${chain}"
    done
  done
  # Proof that nothing is left.
  if grep -q " ${work}" /proc/self/mountinfo; then echo "error: mounts left under ${work}" >&2; rc=1; fi
  if [[ -n $(cgroups) ]]; then echo "error: cgroups left: $(cgroups)" >&2; rc=1; fi
  if ip link show "${bridge}" >/dev/null 2>&1; then echo "error: bridge ${bridge} left" >&2; rc=1; fi
  if iptables-save | grep -qE "${subnet_prefix//./\\.}|-i ${bridge} "; then echo "error: iptables rules left" >&2; rc=1; fi
  if [[ ${rc} -ne 0 && -f ${work}/agentd.log ]]; then echo "--- agentd log:" >&2; tail -n 50 "${work}/agentd.log" >&2; fi
  rm -rf "${work}"
  echo "== took $((SECONDS - started)) s"
  exit "${rc}"
}
trap cleanup EXIT

# install puts a version's binaries in ${bin} the way a package upgrade does: each
# written beside its target, then renamed over it while the old one may run.
install_bins() {
  mkdir -p "${bin}"
  for b in "${binaries[@]}"; do
    cp "$1/${b}" "${bin}/.${b}.new"
    mv -f "${bin}/.${b}.new" "${bin}/${b}"
  done
}

mkdir -p "${work}/state/manifests"
chmod 0755 "${work}/state/manifests"
cat >"${work}/config.json" <<JSON
{
  "manifest-dir": "${work}/state/manifests",
  "root": "${work}/state/root",
  "run-dir": "${work}/state/run",
  "log-dir": "${work}/state/logs",
  "cgroup-parent": "${parent}",
  "network": {"bridge": "${bridge}", "subnet": "${subnet_prefix}0/24"},
  "live-restore": true
}
JSON
ctl() { "${bin}/agentctl" "$@"; }
fail() { echo "FAIL: $*" >&2; ctl get pods >&2 || true; exit 1; }

start_agentd() {
  "${bin}/agentd" --config-file "${work}/config.json" >>"${work}/agentd.log" 2>&1 &
  agentd_pid=$!
  for _ in $(seq 600); do
    ctl info >/dev/null 2>&1 && return
    kill -0 "${agentd_pid}" 2>/dev/null || break
    sleep 0.1
  done
  fail "agentd did not answer within 60 s"
}
stop_agentd() {
  kill -TERM "${agentd_pid}"
  wait "${agentd_pid}" || true
  agentd_pid=""
}
# until DESC CMD...: polls CMD until it succeeds, 60 s at most.
until_ok() {
  local what=$1
  shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return; sleep 0.1; done
  fail "timed out waiting for ${what}"
}
running() { [[ $(ctl get pods --no-headers 2>/dev/null | awk '$3 == "Running"' | wc -l) -eq $1 ]]; }
ids() { ctl get pods -o json | grep -o '"containerID": *"[^"]*"' | sort; }
restarts_of() { ctl get pods "$1" --no-headers 2>/dev/null | awk '{print $4}'; }
restarted() { [[ $(restarts_of "$1") == 1 ]] && ctl get pods "$1" --no-headers | grep -q Running; }
# monitors_are N_OLD N_NEW: N_OLD lean monitors run a replaced (old) binary, N_NEW the new one.
monitors_are() {
  local old new
  old=$(monitors | grep -c ' (deleted)$' || true)
  new=$(monitors | grep -vc ' (deleted)$' || true)
  [[ ${old} -eq $1 && ${new} -eq $2 ]]
}
gone() { ! ctl get pods --no-headers 2>/dev/null | grep -q "^$1 "; }

# uid_of POD prints a pod's UID.
uid_of() { ctl get pods "$1" -o json | grep -o '"uid": *"[^"]*"' | head -n1 | sed 's/.*"\([^"]*\)"$/\1/'; }
# has_runs DIR: DIR holds at least one run directory.
has_runs() { [[ -n $(ls -A "$1" 2>/dev/null) ]]; }
write_pod() {
  local n=$1
  cat >"${work}/state/manifests/.p${n}.tmp" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: upgrade-${n}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do echo tick; sleep 1 & wait; done"]
YAML
  mv "${work}/state/manifests/.p${n}.tmp" "${work}/state/manifests/p${n}.yaml"
}

install_bins "${old_bin}"
ctl --root "${work}/state/root" image import "${image}" >/dev/null
for n in 1 2 3; do write_pod "${n}"; done

echo "== ${old_ref} (${old_sha:0:12}): agentd runs 3 pods"
start_agentd
until_ok "3 pods Running" running 3
before=$(ids)
until_ok "3 lean monitors" monitors_are 0 3
stop_agentd

echo "== the binaries are replaced; the new agentd adopts the pods"
install_bins "${new_bin}"
monitors_are 3 0 || fail "the running monitors should be the replaced binaries: $(monitors)"
start_agentd
until_ok "3 pods Running" running 3
after=$(ids)
if [[ "${before}" != "${after}" ]]; then
  diff <(echo "${before}") <(echo "${after}") >&2 || true
  fail "containers were replaced instead of adopted"
fi
grep -q "Adopted pod" "${work}/agentd.log" || fail "the new agentd did not log any adoption"

echo "== exec through an old monitor"
out=$(ctl exec upgrade-1 -- echo exec-through-old-monitor) || fail "exec: ${out}"
[[ ${out} == exec-through-old-monitor ]] || fail "exec printed ${out}"

echo "== an old monitor restarts its container with the new agent-monitor"
# (kill may be killed with the container's init before it exits: its status says nothing)
ctl exec upgrade-1 -- kill 1 >/dev/null 2>&1 || true
until_ok "upgrade-1 restarted once and Running" restarted upgrade-1
until_ok "upgrade-1's monitor to run the new lean image" monitors_are 2 1
[[ $(ids) != "${after}" ]] || fail "upgrade-1 still has its old container ID"
ctl logs upgrade-1 | grep -q tick || fail "upgrade-1's new run does not log"

echo "== the new agentd stops a pod through its old monitor"
rm "${work}/state/manifests/p3.yaml"
until_ok "upgrade-3 gone" gone upgrade-3
until_ok "upgrade-3's monitor gone" monitors_are 1 1

echo "== an adopted container's runs stay where its config put them; a new pod's go under root"
uid1=$(uid_of upgrade-1)
[[ -n ${uid1} ]] || fail "no UID for upgrade-1"
has_runs "${work}/state/run/monitors/${uid1}_main/runs" || fail "upgrade-1's new run is not in its monitor's state directory"
[[ ! -e ${work}/state/root/containers/${uid1}_main ]] || fail "upgrade-1's runs moved under root"
write_pod 4
until_ok "upgrade-4 Running" running 3
uid4=$(uid_of upgrade-4)
[[ -n ${uid4} ]] || fail "no UID for upgrade-4"
has_runs "${work}/state/root/containers/${uid4}_main/runs" || fail "upgrade-4's run is not under root/containers"
[[ ! -e ${work}/state/run/monitors/${uid4}_main/runs ]] || fail "upgrade-4 has runs in run-dir"

echo "PASS: ${old_ref} (${old_sha:0:12}) -> $(git describe --always --dirty): 3 pods adopted with the same container IDs; exec, restart and stop work through the old monitors; runs stay where each config put them"
