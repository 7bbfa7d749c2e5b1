# Shared prerequisite checks and work-directory handling of hack/bench-*.sh.
# Source it from a script that runs with `set -euo pipefail` in the repository's
# root; it defines functions only.

# bench_require_root <what needs root>: fail unless run as root.
bench_require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "error: the benchmark needs root ($1); run: sudo $0" >&2
    exit 1
  fi
}

# bench_require_built <file>...: fail, naming the missing ones, unless `make build
# image` made every file.
bench_require_built() {
  local missing=() f
  for f in "$@"; do
    [[ -e ${f} ]] || missing+=("${f}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "error: missing ${missing[*]}; build them first with:" >&2
    echo "  make build image" >&2
    exit 1
  fi
}

# bench_require_pod_network: fail unless what agentd's pod network needs is there
# (ip, iptables, the CNI bridge and host-local plugins).
bench_require_pod_network() {
  local missing=() c p
  for c in ip iptables; do
    command -v "${c}" >/dev/null 2>&1 || missing+=("${c}")
  done
  for p in bridge host-local; do
    [[ -x /usr/lib/cni/${p} || -x /opt/cni/bin/${p} ]] || missing+=("CNI plugin ${p}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "error: missing ${missing[*]} (agentd's pod network needs them); install with:" >&2
    echo "  sudo hack/install-deps.sh" >&2
    exit 1
  fi
}

# bench_require_peer: fail unless conmon and runc are there: conmon + runc's start
# is the yardstick u of every target, measured in each benchmark's run.
bench_require_peer() {
  local missing=() c
  for c in conmon runc; do
    command -v "${c}" >/dev/null 2>&1 || missing+=("${c}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "error: ${missing[*]} not found in PATH (conmon + runc's start is the yardstick); install with:" >&2
    echo "  sudo hack/install-deps.sh" >&2
    exit 1
  fi
}

# bench_require_go: put /usr/local/go/bin on PATH when go is not on it, or fail.
bench_require_go() {
  if ! command -v go >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then
      export PATH="${PATH}:/usr/local/go/bin"
    else
      echo "error: 'go' not found in PATH; install Go (the version go.mod names) and re-run $0" >&2
      exit 1
    fi
  fi
}

# bench_workdir <mktemp template>: makes the work directory ${workdir}. The Go
# program removes it at its end; the EXIT trap set here only makes sure it is
# gone unless something is still mounted under it (then it is kept and named).
bench_workdir() {
  workdir=$(mktemp -d "$1")
  trap bench_check_left EXIT
}

bench_check_left() {
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
