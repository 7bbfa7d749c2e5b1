#!/bin/bash
# The checks of hack/test-cgroupv2.sh, run inside its VM (Debian 12, unified cgroup
# v2, systemd) at boot by the image's cgv2-test.service, as root:
#
#   guest-test.sh PAYLOAD_DIR
#
# PAYLOAD_DIR holds bin/ (agentd, agentctl, agent-monitor, agent-monitor-lean),
# busybox.tar and agentd.service (manifests/systemd). agentd is installed as
# that unit says and runs under systemd (live restore on, cgroup-parent /agent);
# each check prints "ok: ..." or "FAIL: ... (what was seen)", every check runs
# even after a failure, and the last line is "CGV2-RESULT: PASS" or "... FAIL".
set -uo pipefail
payload=${1:?payload dir}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cg=/sys/fs/cgroup
parent=/agent
manifests=/etc/agent/manifests
failures=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }
finish() {
  if ((failures > 0)); then
    echo "--- agentd's journal (last 40 lines):"
    journalctl -u agentd --no-pager -n 40 -o cat 2>&1 | sed 's/^/   /'
  fi
  if ((failures == 0)); then echo "CGV2-RESULT: PASS"; else echo "CGV2-RESULT: FAIL (${failures} failed)"; fi
  sync
}
trap finish EXIT
# until_ok SECONDS CMD...: polls CMD until it succeeds; TCG is slow, so deadlines are long.
until_ok() {
  local deadline=$((SECONDS + $1))
  shift
  while ((SECONDS < deadline)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}
# expect WHAT FILE VALUE: FILE (under /sys/fs/cgroup) reads VALUE.
expect() {
  local what=$1 f=$2 want=$3 got
  got=$(cat "${cg}${f}" 2>&1)
  if [[ ${got} == "${want}" ]]; then ok "${what}: ${f} = ${want}"; else bad "${what}: ${f} is '${got}', want '${want}'"; fi
}
ctl() { agentctl "$@"; }
main_pid() { systemctl show -p MainPID --value agentd; }
answers() { ctl info >/dev/null; }
phase() { ctl get pods "$1" --no-headers 2>/dev/null | awk '{print $3}'; }
is_running() { [[ $(phase "$1") == Running ]]; }
uid_of() { ctl get pods "$1" -o json | grep -o '"uid": *"[^"]*"' | head -n1 | sed 's/.*"\([^"]*\)"$/\1/'; }
ids() { ctl get pods -o json | grep -o '"containerID": *"[^"]*"' | sort; }
# monitors prints "pid exe" of every running monitor.
monitors() {
  local p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "${p}/exe" 2>/dev/null) || continue
    [[ ${exe} == /usr/local/bin/agent-monitor* ]] && echo "${p#/proc/}"
  done
  return 0
}
cgroup_of() { sed -n 's/^0:://p' "/proc/$1/cgroup"; }
write_pod() {
  cat >"${manifests}/.$1.tmp"
  mv "${manifests}/.$1.tmp" "${manifests}/$1.yaml"
}

echo "== the VM: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
if [[ $(stat -f -c %T ${cg}) == cgroup2fs ]] && ! grep -q ' cgroup ' /proc/mounts; then
  ok "/sys/fs/cgroup is cgroup2 (unified), no v1 hierarchy mounted; controllers: $(cat ${cg}/cgroup.controllers)"
else
  bad "not a unified cgroup v2 host: $(grep cgroup /proc/mounts | tr '\n' ';')"
fi

# --- agentd under systemd, as manifests/systemd/agentd.service installs it --------------
install -m 0755 "${payload}"/bin/* /usr/local/bin/
install -m 0644 "${payload}/agentd.service" /etc/systemd/system/agentd.service
mkdir -p /etc/agent "${manifests}"
chmod 0755 "${manifests}"
cat >/etc/agent/config.json <<'JSON'
{
  "live-restore": true
}
JSON
t0=${SECONDS}
ctl --root /var/lib/agent image import "${payload}/busybox.tar" >/dev/null || bad "image import"
echo "   image import: $((SECONDS - t0)) s"

write_pod guaranteed <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: guaranteed}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    # 8 MiB in its tmpfs /dev/shm: memory that top and the metrics must show.
    command: ["sh", "-c", "head -c 8388608 /dev/zero >/dev/shm/fill; trap 'exit 0' TERM; while true; do echo tick; sleep 1 & wait; done"]
    resources:
      limits: {cpu: 500m, memory: 64Mi}
YAML
write_pod burstable <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: burstable}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    resources:
      requests: {cpu: 250m}
      limits: {memory: 32Mi}
YAML
write_pod besteffort <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: besteffort}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
YAML

echo "== agentd starts under systemd"
systemctl daemon-reload
t0=${SECONDS}
systemctl start agentd || bad "systemctl start agentd: $(systemctl status agentd --no-pager 2>&1 | tail -n 5)"
if until_ok 120 answers; then ok "agentd answers after $((SECONDS - t0)) s"; else bad "agentd does not answer"; fi
info=$(ctl info 2>&1)
if grep -q '^Cgroup Version: *2$' <<<"${info}"; then ok "agentctl info: Cgroup Version: 2"; else bad "agentctl info says: $(grep -i cgroup <<<"${info}")"; fi

echo "== pods start"
for p in guaranteed burstable besteffort; do
  if until_ok 240 is_running "${p}"; then ok "${p} Running"; else bad "${p} is '$(phase "${p}")', not Running"; fi
done
ctl get pods

echo "== limits land in memory.max, cpu.max, cpu.weight, pids.max"
g=$(uid_of guaranteed)
b=$(uid_of burstable)
e=$(uid_of besteffort)
# The container's: runc's conversion of kubelet's shares (500m: 512 shares, weight 59).
expect "guaranteed container" "${parent}/pod-${g}/main/memory.max" 67108864
expect "guaranteed container" "${parent}/pod-${g}/main/cpu.max" "50000 100000"
expect "guaranteed container" "${parent}/pod-${g}/main/cpu.weight" 59
expect "guaranteed container" "${parent}/pod-${g}/main/pids.max" 4096
# No swap beyond the limit (memory+swap = the limit: v2's swap alone is 0).
expect "guaranteed container" "${parent}/pod-${g}/main/memory.swap.max" 0
# The pod's (kubelet's ResourceConfigForPod).
expect "guaranteed pod" "${parent}/pod-${g}/memory.max" 67108864
expect "guaranteed pod" "${parent}/pod-${g}/cpu.max" "50000 100000"
expect "guaranteed pod" "${parent}/pod-${g}/cpu.weight" 59
# Burstable: 250m requested (256 shares, weight 35), no CPU limit.
expect "burstable container" "${parent}/burstable/pod-${b}/main/memory.max" 33554432
expect "burstable container" "${parent}/burstable/pod-${b}/main/cpu.max" "max 100000"
expect "burstable container" "${parent}/burstable/pod-${b}/main/cpu.weight" 35
expect "burstable pod" "${parent}/burstable/pod-${b}/cpu.weight" 35
# The QoS tiers: burstable the sum of its pods' requests, besteffort kubelet's minimum (2 shares: weight 1).
expect "burstable tier" "${parent}/burstable/cpu.weight" 35
expect "besteffort tier" "${parent}/besteffort/cpu.weight" 1
expect "besteffort container" "${parent}/besteffort/pod-${e}/main/cpu.weight" 1
expect "besteffort container" "${parent}/besteffort/pod-${e}/main/memory.max" max

echo "== monitors sit in leaf cgroups of their own (no internal processes)"
mapfile -t mons < <(monitors)
[[ ${#mons[@]} -eq 3 ]] && ok "3 monitors run" || bad "${#mons[@]} monitors run, want 3"
for m in "${mons[@]}"; do
  c=$(cgroup_of "${m}")
  if [[ ${c} != ${parent}/monitors/* ]]; then bad "monitor ${m} is in ${c}, not under ${parent}/monitors"; continue; fi
  kids=$(find "${cg}${c}" -mindepth 1 -type d | wc -l)
  others=$(grep -vx "${m}" "${cg}${c}/cgroup.procs" | wc -l)
  if [[ ${kids} -eq 0 && ${others} -eq 0 ]]; then ok "monitor ${m} alone in the leaf ${c}"; else bad "monitor ${m}'s ${c} has ${kids} child cgroups and ${others} other processes: $(cat "${cg}${c}/cgroup.procs" | tr '\n' ' ')"; fi
done
# v2's rule: a cgroup with processes has no controllers enabled for its children.
inner=0
while read -r d; do
  if [[ -s ${d}/cgroup.procs && -n $(cat "${d}/cgroup.subtree_control") ]]; then
    bad "${d#"${cg}"} has processes ($(tr '\n' ' ' <"${d}/cgroup.procs")) and controllers for children ($(cat "${d}/cgroup.subtree_control"))"
    inner=$((inner + 1))
  fi
done < <(find "${cg}${parent}" -type d)
((inner == 0)) && ok "no cgroup under ${parent} has both processes and controllers for its children"

echo "== a container sees its own cgroup (cgroup namespace) and its limits"
inside=$(ctl exec guaranteed -- cat /proc/self/cgroup 2>&1)
[[ ${inside} == "0::/" ]] && ok "exec: /proc/self/cgroup is 0::/" || bad "exec: /proc/self/cgroup is '${inside}', want '0::/'"
inside=$(ctl exec guaranteed -- cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max 2>&1 | tr '\n' ' ')
[[ ${inside} == "67108864 50000 100000 " ]] && ok "exec: the container reads its memory.max and cpu.max: ${inside}" || bad "exec: the container's /sys/fs/cgroup/{memory,cpu}.max read '${inside}'"
c=$(find "${cg}${parent}/pod-${g}/main" -name cgroup.procs -exec cat {} + | wc -l)
echo "   processes in the container's cgroup: ${c}"

echo "== a container that exits is restarted in the same cgroup with its limits"
ctl exec burstable -- kill 1 >/dev/null 2>&1 || true
restarted() { [[ $(ctl get pods burstable --no-headers | awk '{print $4}') == 1 ]] && is_running burstable; }
if until_ok 240 restarted; then ok "burstable restarted once"; else bad "burstable: $(ctl get pods burstable --no-headers 2>&1)"; fi
expect "restarted burstable container" "${parent}/burstable/pod-${b}/main/memory.max" 33554432
expect "restarted burstable container" "${parent}/burstable/pod-${b}/main/cpu.weight" 35
mon_b=$(for m in $(monitors); do [[ $(cgroup_of "${m}") == "${parent}/monitors/${b}_main" ]] && echo "${m}"; done)
[[ -n ${mon_b} ]] && ok "burstable's monitor (${mon_b}) still in ${parent}/monitors/${b}_main" || bad "no monitor in ${parent}/monitors/${b}_main: $(for m in $(monitors); do echo "${m}:$(cgroup_of "${m}")"; done)"

echo "== OOMKilled (memory.events)"
write_pod oom <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["tail", "/dev/zero"]
    resources:
      limits: {memory: 16Mi}
YAML
oom_reason() { ctl get pods oom -o json 2>/dev/null | grep -o '"reason": *"[^"]*"' | sort -u | tr '\n' ' '; }
if until_ok 240 eval '[[ $(oom_reason) == *OOMKilled* ]]'; then ok "oom is reported OOMKilled"; else bad "oom's reasons: '$(oom_reason)', phase $(phase oom)"; fi
rm -f "${manifests}/oom.yaml"

echo "== top and /metrics/resource read cpu.stat and memory.current"
topout=$(ctl top pod guaranteed --no-headers 2>&1)
mem=$(awk '{print $3}' <<<"${topout}")
cur=$(cat "${cg}${parent}/pod-${g}/main/memory.current")
# The 8 MiB it holds, and no more than memory.current (working set: less inactive files).
if [[ ${mem} =~ ^[0-9]+Mi$ ]] && ((${mem%Mi} >= 8 && ${mem%Mi} <= cur / 1048576 + 1)); then
  ok "agentctl top pod guaranteed: ${topout} (memory.current ${cur})"
else
  bad "agentctl top pod guaranteed: '${topout}', memory.current ${cur}"
fi
echo "   its container's cpu.stat usage_usec: $(awk '/usage_usec/ {print $2}' "${cg}${parent}/pod-${g}/main/cpu.stat")"
scrape() {
  exec 3<>/dev/tcp/127.0.0.1/10253 || return 1
  printf 'GET /metrics/resource HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  cat <&3
  exec 3<&-
}
metrics=$(scrape 2>&1)
for m in container_cpu_usage_seconds_total:0 container_memory_working_set_bytes:8388608 pod_memory_working_set_bytes:8388608; do
  line=$(grep "^${m%:*}{" <<<"${metrics}" | grep 'pod="guaranteed"' | head -n1)
  val=$(awk '{print $2}' <<<"${line}")
  if [[ -n ${val} ]] && awk -v v="${val}" -v min="${m#*:}" 'BEGIN {exit !(v > min)}'; then ok "/metrics/resource: ${line}"; else bad "/metrics/resource has no ${m%:*} > ${m#*:} for guaranteed: '${line}' ($(head -c 300 <<<"${metrics}"))"; fi
done

for m in node_cpu_usage_seconds_total node_memory_working_set_bytes; do
  line=$(grep "^${m} " <<<"${metrics}" | head -n1)
  val=$(awk '{print $2}' <<<"${line}")
  if [[ -n ${val} ]] && awk -v v="${val}" 'BEGIN {exit !(v > 0)}'; then ok "/metrics/resource: ${line}"; else bad "/metrics/resource has no ${m} > 0: '${line}'"; fi
done

echo "== Delegate=yes: agentd alone in its unit's cgroup, pods and monitors under ${parent}"
pid=$(main_pid)
unit_cg=$(cgroup_of "${pid}")
[[ $(systemctl show -p Delegate --value agentd) == yes ]] && ok "agentd.service has Delegate=yes" || bad "Delegate is $(systemctl show -p Delegate --value agentd)"
procs=$(tr '\n' ' ' <"${cg}${unit_cg}/cgroup.procs")
if [[ ${unit_cg} == /system.slice/agentd.service* && ${procs} == "${pid} " ]]; then ok "agentd (${pid}) alone in ${unit_cg}"; else bad "agentd ${pid} in ${unit_cg} with processes: ${procs}"; fi

echo "== kill -9 of agentd (live restore): monitors and containers survive, systemd restarts agentd"
before=$(ids)
mons_before=$(monitors | sort | tr '\n' ' ')
kill -KILL "${pid}"
if until_ok 120 eval '[[ $(main_pid) != 0 && $(main_pid) != '"${pid}"' ]] && answers'; then ok "systemd restarted agentd ($(main_pid))"; else bad "agentd not back after kill -9: $(systemctl status agentd --no-pager 2>&1 | tail -n 5)"; fi
for p in guaranteed burstable besteffort; do
  until_ok 120 is_running "${p}" || bad "${p} is '$(phase "${p}")' after the restart"
done
after=$(ids)
[[ ${before} == "${after}" ]] && ok "the same containers after the restart (adopted, not replaced)" || bad "containers changed: ${before} -> ${after}"
mons_after=$(monitors | sort | tr '\n' ' ')
[[ ${mons_before} == "${mons_after}" ]] && ok "the same monitors run: ${mons_after}" || bad "monitors were ${mons_before}, now ${mons_after}"
for m in ${mons_after}; do [[ $(cgroup_of "${m}") == ${parent}/monitors/* ]] || bad "monitor ${m} moved to $(cgroup_of "${m}")"; done
journalctl -u agentd --no-pager -o cat | grep -q 'Adopted pod' && ok "agentd logged its adoptions" || bad "no 'Adopted pod' in agentd's journal"

echo "== systemctl restart agentd (KillMode=process): the pods stay"
systemctl restart agentd
until_ok 120 answers || bad "agentd does not answer after systemctl restart"
for p in guaranteed burstable besteffort; do
  until_ok 120 is_running "${p}" || bad "${p} is '$(phase "${p}")' after systemctl restart"
done
[[ $(ids) == "${before}" ]] && ok "the same containers after systemctl restart" || bad "containers changed on systemctl restart"

echo "== systemd's daemon-reload and daemon-reexec leave ${parent} alone"
systemctl daemon-reload
systemctl daemon-reexec
until_ok 60 answers || bad "agentd does not answer after daemon-reexec"
expect "guaranteed pod after daemon-reexec" "${parent}/pod-${g}/cpu.weight" 59
expect "guaranteed container after daemon-reexec" "${parent}/pod-${g}/main/memory.max" 67108864
ctrls=$(cat "${cg}${parent}/cgroup.subtree_control")
[[ ${ctrls} == *cpu* && ${ctrls} == *memory* && ${ctrls} == *pids* ]] && ok "${parent}/cgroup.subtree_control: ${ctrls}" || bad "${parent}/cgroup.subtree_control is '${ctrls}'"
[[ $(monitors | sort | tr '\n' ' ') == "${mons_after}" ]] && ok "the monitors run on" || bad "monitors were ${mons_after}, now $(monitors | sort | tr '\n' ' ')"
# A monitor left in agentd.service's cgroup would be a "left-over process" to systemd.
if journalctl -u agentd --no-pager -o cat | grep -qi 'left-over process'; then
  bad "systemd found left-over processes in agentd.service: $(journalctl -u agentd --no-pager -o cat | grep -i 'left-over' | head -n 3)"
else
  ok "systemd never found a left-over process in agentd.service"
fi

echo "== the pods are removed: their cgroups go"
rm -f "${manifests}"/*.yaml
gone() { [[ -z $(ctl get pods --no-headers 2>/dev/null) ]]; }
until_ok 240 gone && ok "every pod stopped" || bad "pods left: $(ctl get pods --no-headers 2>&1 | tr '\n' ';')"
left() { find "${cg}${parent}" -mindepth 1 -type d -name 'pod-*' -o -mindepth 2 -path "*/monitors/*" -type d; }
until_ok 60 eval '[[ -z $(left) ]]' && ok "no pod or monitor cgroups left under ${parent}" || bad "cgroups left: $(left | tr '\n' ' ')"
systemctl stop agentd

echo "== the project's root tests that touch cgroups"
for t in "${payload}"/tests/*.test; do
  [[ -e ${t} ]] || continue
  name=$(basename "${t}" .test)
  pattern=$(cat "${payload}/tests/${name}.run")
  dir=$(mktemp -d "/var/tmp/gotest-${name}.XXXXXX")
  t0=${SECONDS}
  if (cd "${dir}" && AGENTD_TEST_BIN=/usr/local/bin AGENTD_TEST_IMAGE="${payload}/busybox.tar" \
    "${t}" -test.run "${pattern}" -test.count=1 -test.timeout 10m -test.v >"${dir}/out" 2>&1); then
    ok "${name} ${pattern}: $(grep -c -- '^--- PASS' "${dir}/out") passed, $(grep -c -- '--- SKIP' "${dir}/out") skipped ($((SECONDS - t0)) s)"
    grep -A1 -e '--- SKIP' "${dir}/out" | sed 's/^/   /'
  else
    bad "${name} ${pattern}:"
    grep -E -- '^\s*--- FAIL|_test.go:[0-9]+:' "${dir}/out" | head -n 40 | sed 's/^/   /'
    tail -n 5 "${dir}/out" | sed 's/^/   /'
  fi
  rm -rf "${dir}"
done
