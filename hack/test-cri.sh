#!/usr/bin/env bash
# Runs critest (cri-tools v1.37.0, hack/build-cri-tools.sh) against agentd's CRI
# socket, offline: the subset of docs/cri-critest.md by default.
#
#   hack/test-cri.sh [critest flags...]                              (its own agentd)
#   CRI_SOCKET=/run/agent/cri.sock hack/test-cri.sh [critest flags...] (an agentd already running)
#
# It builds crictl and critest, makes every image critest needs from Debian's
# busybox-static (hack/testimage: nothing is downloaded), writes critest's
# --test-images-file, imports the images the runtime specs create containers
# from into agentd (agentctl image import, so no pull is needed for them),
# starts a registry on loopback holding the Image Manager images when the focus
# has those specs, and runs critest with its JUnit report in
# $OUT/report/junit.xml. Its exit status is critest's: non-zero when a spec fails.
#
# Without CRI_SOCKET it starts an agentd of its own from bin/ (make build) in a
# temporary directory, with the registries file it writes, live restore off, its
# own cgroup parent, bridge and pod subnet, and at exit (critest passed, failed
# or was interrupted) stops critest, the registry and agentd by their pids
# (first removing the CRI sandboxes critest left, with crictl; SIGTERM to agentd,
# which stops its pods), then SIGKILLs by pid whatever is
# still in its cgroups and removes what is left: mounts, cgroups, the pods' NAT
# and portmap rules, the bridge and its INPUT rules, and the directory. Processes,
# mounts, cgroups or pod rules agentd left behind make it exit 1 even when
# critest passed. This is how `make test` and `make test-cri` run it.
#
# It needs only what `make deps` installs (busybox-static, docker-registry,
# iproute2, iptables, the CNI plugins) and Go: cri-tools and hack/testimage are
# built from the Go module proxy or the module cache.
#
# With CRI_SOCKET, that agentd must run with `cri.socket` and, for the Image
# Manager specs, with the registries file this script writes
# ($OUT/registries.yaml), which mirrors gcr.io, registry.k8s.io and k8s.gcr.io to
# $REGISTRY (critest compares pulled images' tags with their upstream names, so
# --registry-prefix cannot work): run the script once to write it (it stops when
# it finds no socket), start agentd with `"registries-config": "$OUT/registries.yaml"`,
# and run it again.
#
# Host ports 12000-12003 must be free. It starts containers, an agentd and a
# registry: on a shared machine run it under the root-tests lock. Every process it
# starts is stopped by its pid when it exits, and critest is bounded by
# CRI_TIMEOUT.
#
# Environment:
#   CRI_SOCKET    an agentd's CRI socket (default: start one)
#   AGENT_SOCKET  agentd's API socket, for the imports (default: agent.sock beside CRI_SOCKET)
#   CRI_FOCUS     ginkgo focus regexp (default: the offline subset)
#   CRI_SKIP      ginkgo skip regexp (default: the spec that pins an upstream digest)
#   CRI_TIMEOUT   the longest critest may run (ginkgo's --timeout; default 10m;
#                 the default focus takes about 40 s on 2 CPUs)
#   CRI_FLAKE_ATTEMPTS  runs of a failing spec before it fails the suite (default 2:
#                 the stop specs race critest's SIGTERM against top's start, see
#                 docs/cri-critest.md; a spec that needed 2 is reported as flaky)
#   REGISTRY      loopback host:port for the Image Manager registry (default
#                 127.0.0.1:5000 with CRI_SOCKET, else the first free port from 5000)
#   OUT           output directory (default _output/cri-test)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${REPO_ROOT}"

OWN_AGENTD=
[[ -n ${CRI_SOCKET:-} ]] || OWN_AGENTD=1
CRI_FOCUS=${CRI_FOCUS:-'\[k8s\.io\] (Runtime info|PodSandbox|Container runtime|Streaming|Networking|Image Manager|Idempotence|Image Consistency|Image Identifier Consistency) '}
CRI_SKIP=${CRI_SKIP:-'public image with digest'}
CRI_TIMEOUT=${CRI_TIMEOUT:-10m}
CRI_FLAKE_ATTEMPTS=${CRI_FLAKE_ATTEMPTS:-2}
if [[ -z ${REGISTRY:-} ]]; then
  REGISTRY=127.0.0.1:5000
  if [[ -n ${OWN_AGENTD} ]]; then
    for port in $(seq 5000 5099); do
      if ! ss -Htln "sport = :${port}" | grep -q .; then
        REGISTRY=127.0.0.1:${port}
        break
      fi
    done
  fi
fi
OUT=${OUT:-${REPO_ROOT}/_output/cri-test}
TOOLS=${REPO_ROOT}/_output/tools

fail() {
  echo "error: $*" >&2
  exit 1
}

[[ $(id -u) -eq 0 ]] || fail "critest drives a root-only socket and bind-mounts host paths: run $0 as root"
[[ -e /bin/busybox ]] || fail "/bin/busybox not found: install it with hack/install-deps.sh (or apt-get install busybox-static)"
case ${REGISTRY%:*} in
  127.0.0.1 | localhost | '[::1]') ;;
  *) fail "REGISTRY=${REGISTRY}: the test registry speaks plain HTTP and must be on loopback" ;;
esac

# 1. The tools.
hack/build-cri-tools.sh "${TOOLS}"

# 2. The images, all from the busybox test image (see docs/cri-critest.md).
mkdir -p "${OUT}/images" "${OUT}/src" "${OUT}/bin"
go build -o "${OUT}/bin/testimage" ./hack/testimage
testimage() { "${OUT}/bin/testimage" "$@"; }
echo '<html><body>critest web server</body></html>' >"${OUT}/src/index.html"
arch=$(go env GOARCH)
web() { # web PORT: the CMD of a web server on PORT that serves index.html
  printf '["sh","-c","echo httpd: serving on :%s; exec httpd -f -v -p %s -h /var/www"]' "$1" "$1"
}

# Imported into agentd under these names: the runtime specs create containers
# from them, and critest pulls only what ImageStatus does not find.
BUSYBOX=localhost/critest/busybox:1.29-2 # defaultTestContainerImage
NGINX=localhost/critest/nginx:1.14-2     # webServerTestImage
HOSTNET_NGINX=gcr.io/k8s-staging-cri-tools/hostnet-nginx-${arch}:latest
HTTPD=registry.k8s.io/e2e-test-images/httpd:2.4.39-4
testimage -o "${OUT}/images/busybox.tar" -name "${BUSYBOX}" -add usr/bin/pgrep=hack/critest/pgrep
testimage -o "${OUT}/images/nginx.tar" -name "${NGINX}" -cmd "$(web 80)" -add var/www/index.html="${OUT}/src/index.html"
testimage -o "${OUT}/images/hostnet-nginx.tar" -name "${HOSTNET_NGINX}" -cmd "$(web 12003)" -add var/www/index.html="${OUT}/src/index.html"
testimage -o "${OUT}/images/httpd.tar" -name "${HTTPD}" -cmd "$(web 80)" -add var/www/index.html="${OUT}/src/index.html"

cat >"${OUT}/test-images.yaml" <<YAML
defaultTestContainerImage: ${BUSYBOX}
webServerTestImage: ${NGINX}
YAML
cat >"${OUT}/registries.yaml" <<YAML
# agentd's registries file (k3s registries.yaml format) for the Image Manager specs.
mirrors:
  gcr.io:
    endpoint: ["http://${REGISTRY}"]
  registry.k8s.io:
    endpoint: ["http://${REGISTRY}"]
  k8s.gcr.io:
    endpoint: ["http://${REGISTRY}"]
YAML

# 3. agentd: its own, or the one CRI_SOCKET names. What the script starts is
# stopped by pid at exit (cleanup), whether critest passed, failed or was
# interrupted; the script's exit status is critest's, or 1 when agentd left
# processes, mounts or a pod's iptables rules behind.
agentd_pid=
agentd_dir=
registry_pid=
critest_pid=
stop_pid() { # stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS
  local pid=$1 i
  kill -TERM "${pid}" 2>/dev/null || return 0
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "${pid}" 2>/dev/null; then
    echo "warning: pid ${pid} did not stop within $2 s: killing it" >&2
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  wait "${pid}" 2>/dev/null || true
}
# The cgroup directories of this run's agentd (every v1 hierarchy, or v2),
# deepest first.
own_cgroups() {
  find /sys/fs/cgroup/ -maxdepth 2 -type d -name "${CGROUP_PARENT#/}" -print0 2>/dev/null |
    xargs -0 -r -I{} find {} -depth -type d 2>/dev/null
}
# kill_leftovers: SIGKILL, by pid, every process still in this run's cgroups
# (monitors and containers of an agentd that was killed or lost track of
# them), and wait until they are gone. Prints how many there were.
kill_leftovers() {
  local pids=() pid cg i
  for ((i = 0; i < 100; i++)); do
    pids=()
    while read -r cg; do
      while read -r pid; do [[ -n ${pid} ]] && pids+=("${pid}"); done <"${cg}/cgroup.procs" 2>/dev/null || true
    done < <(own_cgroups)
    ((${#pids[@]} == 0)) && break
    ((i == 0)) && echo "${#pids[@]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.1
  done
  ((${#pids[@]} == 0)) || echo "warning: pids ${pids[*]} survived SIGKILL" >&2
}
# del_rules TOOL TABLE CHAIN MATCH: deletes CHAIN's rules that contain MATCH
# (fixed string) and prints the chains they jumped to.
del_rules() {
  local tool=$1 table=$2 chain=$3 match=$4 rule
  while read -r rule; do
    # The rule's text is quoted for a shell (its comment).
    eval "${tool} -w -t ${table} ${rule/-A /-D }" 2>/dev/null || true
    echo "${rule##* }"
  done < <("${tool}" -w -t "${table}" -S "${chain}" 2>/dev/null | grep -F -- "${match}" || true)
}
del_chain() { # del_chain TOOL TABLE CHAIN
  "$1" -w -t "$2" -F "$3" 2>/dev/null || true
  "$1" -w -t "$2" -X "$3" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e # clean up all there is, whatever fails
  if [[ -n ${critest_pid} ]]; then
    stop_pid "${critest_pid}" 30
  fi
  if [[ -n ${registry_pid} ]]; then
    stop_pid "${registry_pid}" 10
  fi
  if [[ -n ${agentd_pid} ]]; then
    # The sandboxes critest did not remove (it failed or was stopped), as
    # kubelet would: a stopped sandbox keeps its namespaces until it is removed,
    # and agentd keeps CRI sandboxes across restarts.
    if kill -0 "${agentd_pid}" 2>/dev/null && [[ -S ${CRI_SOCKET} ]]; then
      timeout 120 "${TOOLS}/crictl" --runtime-endpoint "unix://${CRI_SOCKET}" --timeout 100s rmp --all --force >"${OUT}/crictl-rmp.log" 2>&1 ||
        echo "warning: crictl rmp --all --force failed: $(tail -3 "${OUT}/crictl-rmp.log")" >&2
    fi
    # Live restore is off: agentd stops its pods and sandboxes, and their networks, as it stops.
    stop_pid "${agentd_pid}" 90
  fi
  if [[ -n ${agentd_dir} ]]; then
    local m n i chain tool leaked=()
    n=$(kill_leftovers)
    [[ -z ${n} ]] || leaked+=("${n} processes in ${CGROUP_PARENT}")
    while read -r m; do
      umount -l "${m}" 2>/dev/null || true
      leaked+=("mount ${m}")
    done < <(awk -v d="${agentd_dir}/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    # A cgroup whose last task just exited may refuse rmdir for a moment.
    for ((i = 0; i < 50; i++)); do
      while read -r m; do rmdir "${m}" 2>/dev/null; done < <(own_cgroups)
      [[ -z $(own_cgroups) ]] && break
      sleep 0.1
    done
    while read -r m; do leaked+=("cgroup ${m}"); done < <(own_cgroups)
    # Pods' own POSTROUTING rules and portmap's DNAT chains: CNI DEL removes
    # them as agentd stops each pod, so any left is a leak. agentd's one
    # masquerade chain for the whole subnet (AGENTD-MASQ-) stays while it is
    # stopped, as the bridge does: removed here, not a leak.
    while read -r chain; do
      if [[ ${chain} == AGENTD-MASQ-* ]]; then
        del_chain iptables nat "${chain}"
        continue
      fi
      [[ ${chain} == CNI-* ]] && del_chain iptables nat "${chain}"
      leaked+=("iptables nat POSTROUTING -j ${chain}")
    done < <(del_rules iptables nat POSTROUTING "-s ${SUBNET%0/24}")
    while read -r chain; do
      if iptables -w -t nat -S "${chain}" 2>/dev/null | grep -qF -- "${SUBNET%0/24}"; then
        del_rules iptables nat CNI-HOSTPORT-DNAT "-j ${chain}" >/dev/null
        del_chain iptables nat "${chain}"
        leaked+=("iptables nat ${chain}")
      fi
    done < <(iptables -w -t nat -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-DN-/ {print $2}')
    # The bridge's own set-up, which agentd keeps while it is stopped: the
    # bridge, and its INPUT rules (loopback guard, host ports pods may not reach).
    ip link del "${BRIDGE}" 2>/dev/null || true
    for tool in iptables ip6tables; do
      command -v "${tool}" >/dev/null || continue
      while read -r chain; do
        [[ ${chain} == AGENTD-HOST-* ]] && del_chain "${tool}" filter "${chain}"
      done < <(del_rules "${tool}" filter INPUT "-i ${BRIDGE} ")
    done
    rm -rf "${agentd_dir}"
    if ((${#leaked[@]} != 0)); then
      printf 'error: agentd left behind (removed now): %s\n' "${leaked[@]}" >&2
      echo "error: see agentd's log: ${OUT}/agentd.log" >&2
      ((rc != 0)) || rc=1
    fi
  fi
  exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n ${OWN_AGENTD} ]]; then
  for b in agentd agentctl agent-monitor agent-monitor-lean; do
    [[ -x bin/${b} ]] || fail "bin/${b} is missing: run 'make build'"
  done
  # Short: socket paths have a length limit.
  agentd_dir=$(mktemp -d /tmp/agentd-critest.XXXXXX)
  CGROUP_PARENT=/agentd-critest-$$
  BRIDGE=agcritest0
  SUBNET=10.196.0.0/24
  mkdir -p "${agentd_dir}/manifests"
  cat >"${agentd_dir}/config.json" <<JSON
{
  "manifest-dir": "${agentd_dir}/manifests",
  "root": "${agentd_dir}/root",
  "run-dir": "${agentd_dir}/run",
  "log-dir": "${agentd_dir}/logs",
  "live-restore": false,
  "cgroup-parent": "${CGROUP_PARENT}",
  "network": {"bridge": "${BRIDGE}", "subnet": "${SUBNET}"},
  "registries-config": "${OUT}/registries.yaml",
  "metrics-address": ""
}
JSON
  CRI_SOCKET=${agentd_dir}/run/cri.sock
  AGENT_SOCKET=${agentd_dir}/run/agent.sock
  bin/agentd --config-file "${agentd_dir}/config.json" >"${OUT}/agentd.log" 2>&1 &
  agentd_pid=$!
  for _ in $(seq 600); do
    [[ -S ${CRI_SOCKET} && -S ${AGENT_SOCKET} ]] && break
    kill -0 "${agentd_pid}" 2>/dev/null || fail "agentd exited: $(tail -20 "${OUT}/agentd.log")"
    sleep 0.1
  done
  [[ -S ${CRI_SOCKET} ]] || fail "agentd did not serve ${CRI_SOCKET} within 60 s: $(tail -20 "${OUT}/agentd.log")"
  echo "agentd (pid ${agentd_pid}) serves the CRI on ${CRI_SOCKET}; its log: ${OUT}/agentd.log"
fi
AGENT_SOCKET=${AGENT_SOCKET:-$(dirname "${CRI_SOCKET}")/agent.sock}
[[ -S ${CRI_SOCKET} ]] || fail "no CRI socket at ${CRI_SOCKET}: start agentd with \"cri.socket\" (issue 16), or set CRI_SOCKET; images and ${OUT}/test-images.yaml are ready"
[[ -S ${AGENT_SOCKET} ]] || fail "no agentd API socket at ${AGENT_SOCKET} (to import the test images): set AGENT_SOCKET"
[[ -x bin/agentctl ]] || fail "bin/agentctl is missing: run 'make build'"
for port in 12000 12001 12002 12003; do
  if ss -Htln "sport = :${port}" | grep -q .; then
    fail "host port ${port} is in use; critest needs 12000-12003 free (hostPort, port-forward, hostnet web server)"
  fi
done
for f in busybox nginx hostnet-nginx httpd; do
  bin/agentctl --socket "${AGENT_SOCKET}" image import "${OUT}/images/${f}.tar"
done

# 4. The Image Manager registry, when those specs are focused.
if [[ ${CRI_FOCUS} == *Image* ]]; then
  command -v docker-registry >/dev/null || fail "docker-registry not found: install it with hack/install-deps.sh"
  rm -rf "${OUT}/registry"
  mkdir -p "${OUT}/registry/storage"
  cat >"${OUT}/registry/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: ${OUT}/registry/storage
  delete:
    enabled: true
http:
  addr: ${REGISTRY}
YAML
  # REGISTRY_* variables would override the config file.
  unset_registry_env=()
  while read -r v; do unset_registry_env+=(-u "${v}"); done < <(env | sed -n 's/^\(REGISTRY_[A-Za-z0-9_]*\)=.*/\1/p')
  env "${unset_registry_env[@]}" docker-registry serve "${OUT}/registry/config.yml" >"${OUT}/registry/log" 2>&1 &
  registry_pid=$!
  # busybox (make deps installs it) rather than curl, which a clean Debian lacks.
  registry_up() { /bin/busybox wget -q -Y off -O /dev/null "http://${REGISTRY}/v2/" 2>/dev/null; }
  for _ in $(seq 100); do
    registry_up && break
    kill -0 "${registry_pid}" 2>/dev/null || fail "docker-registry exited: $(cat "${OUT}/registry/log")"
    sleep 0.1
  done
  registry_up || fail "docker-registry did not answer on ${REGISTRY}: $(cat "${OUT}/registry/log")"
  r=${REGISTRY}/k8s-staging-cri-tools
  push() { # push ID [testimage flags...] -- REF...: one image, identified by ID, under every REF
    local id=$1 refs=() args=()
    shift
    while [[ $1 != -- ]]; do args+=("$1"); shift; done
    shift
    for ref in "$@"; do refs+=(-push "${ref}"); done
    echo "${id}" >"${OUT}/src/${id}"
    testimage -add "etc/critest-image=${OUT}/src/${id}" "${args[@]}" "${refs[@]}"
  }
  push test-image-tag -- "${r}/test-image-tag:test" "${r}/test-image-tag:all"
  push test-image-latest -- "${r}/test-image-latest:latest"
  push test-image-1 -- "${r}/test-image-1:latest"
  push test-image-2 -- "${r}/test-image-2:latest"
  push test-image-3 -- "${r}/test-image-3:latest"
  push test-image-tags -- "${r}/test-image-tags:1" "${r}/test-image-tags:2" "${r}/test-image-tags:3"
  push test-image-user-uid -user 1002 -- "${r}/test-image-user-uid:latest"
  push test-image-user-username -user www-data -- "${r}/test-image-user-username:latest"
  push test-image-user-uid-group -user 1003:1004 -- "${r}/test-image-user-uid-group:latest"
  push test-image-user-username-group -user www-data:1004 -- "${r}/test-image-user-username-group:latest"
  push pause -- "${REGISTRY}/pause:3.9" # registry.k8s.io/pause and k8s.gcr.io/pause: one image
fi

# 5. critest, in the background so that a signal reaches cleanup at once.
# (critest v1.37.0 accepts --report-dir but writes nothing there: ginkgo writes
# the JUnit report.)
rm -rf "${OUT}/report"
mkdir -p "${OUT}/report"
color=()
[[ -t 1 ]] || color=(--ginkgo.no-color)
"${TOOLS}/critest" \
  --runtime-endpoint "unix://${CRI_SOCKET}" --image-endpoint "unix://${CRI_SOCKET}" \
  --test-images-file "${OUT}/test-images.yaml" \
  --ginkgo.focus="${CRI_FOCUS}" --ginkgo.skip="${CRI_SKIP}" --ginkgo.timeout="${CRI_TIMEOUT}" \
  --ginkgo.flake-attempts="${CRI_FLAKE_ATTEMPTS}" \
  --ginkgo.junit-report="${OUT}/report/junit.xml" "${color[@]}" "$@" &
critest_pid=$!
rc=0
wait "${critest_pid}" || rc=$?
critest_pid=
exit "${rc}"
