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
# has those specs, and runs critest with its JUnit report in $OUT/report.
#
# Without CRI_SOCKET it starts an agentd of its own from bin/ (make build) in a
# temporary directory, with the registries file it writes, live restore off, its
# own cgroup parent, bridge and pod subnet, and at exit stops it by its pid
# (SIGTERM, which stops its pods), removes what it left (mounts, cgroups, the
# bridge, its NAT rules) and its directory: this is how `make test-cri` runs.
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
#   CRI_TIMEOUT   the longest critest may run (ginkgo's --timeout; default 15m)
#   REGISTRY      loopback host:port for the Image Manager registry (default
#                 127.0.0.1:5000 with CRI_SOCKET, else the first free port from 5000)
#   OUT           output directory (default _output/cri-test)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${REPO_ROOT}"

OWN_AGENTD=
[[ -n ${CRI_SOCKET:-} ]] || OWN_AGENTD=1
CRI_FOCUS=${CRI_FOCUS:-'\[k8s\.io\] (Runtime info|PodSandbox|Container runtime|Streaming|Networking|Image Manager) '}
CRI_SKIP=${CRI_SKIP:-'public image with digest'}
CRI_TIMEOUT=${CRI_TIMEOUT:-15m}
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
# stopped by pid at exit (cleanup).
agentd_pid=
agentd_dir=
registry_pid=
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
cleanup() {
  local rc=$?
  if [[ -n ${registry_pid} ]]; then
    stop_pid "${registry_pid}" 10
  fi
  if [[ -n ${agentd_pid} ]]; then
    # Live restore is off: agentd stops its pods and their networks as it stops.
    stop_pid "${agentd_pid}" 90
  fi
  if [[ -n ${agentd_dir} ]]; then
    local m left=0
    while read -r m; do
      echo "warning: left mounted by agentd: ${m}" >&2
      umount -l "${m}" 2>/dev/null || true
      left=1
    done < <(awk -v d="${agentd_dir}/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    find /sys/fs/cgroup/ -maxdepth 2 -type d -name "${CGROUP_PARENT#/}*" -exec sh -c 'find "$1" -depth -type d -exec rmdir {} + 2>/dev/null' _ {} \; 2>/dev/null || true
    ip link del "${BRIDGE}" 2>/dev/null || true
    local rule chain
    while read -r rule; do
      chain=${rule##* }
      eval "iptables -t nat ${rule/-A /-D }" 2>/dev/null || true
      iptables -t nat -F "${chain}" 2>/dev/null || true
      iptables -t nat -X "${chain}" 2>/dev/null || true
    done < <(iptables -t nat -S POSTROUTING 2>/dev/null | grep -F -- "-s ${SUBNET%0/24}" || true)
    if [[ ${left} == 0 ]]; then
      rm -rf "${agentd_dir}"
    else
      echo "warning: kept ${agentd_dir} (agentd's log: ${OUT}/agentd.log)" >&2
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
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://${REGISTRY}/v2/" 2>/dev/null && break
    kill -0 "${registry_pid}" 2>/dev/null || fail "docker-registry exited: $(cat "${OUT}/registry/log")"
    sleep 0.1
  done
  curl -fsS -o /dev/null "http://${REGISTRY}/v2/" || fail "docker-registry did not answer on ${REGISTRY}: $(cat "${OUT}/registry/log")"
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

# 5. critest.
mkdir -p "${OUT}/report"
"${TOOLS}/critest" \
  --runtime-endpoint "unix://${CRI_SOCKET}" --image-endpoint "unix://${CRI_SOCKET}" \
  --test-images-file "${OUT}/test-images.yaml" \
  --ginkgo.focus="${CRI_FOCUS}" --ginkgo.skip="${CRI_SKIP}" --ginkgo.timeout="${CRI_TIMEOUT}" \
  --report-dir "${OUT}/report" "$@"
