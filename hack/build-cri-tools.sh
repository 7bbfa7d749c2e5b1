#!/usr/bin/env bash
# Builds crictl and critest (sigs.k8s.io/cri-tools, version pinned in hack/tools/go.mod)
# into _output/tools/, for driving agentd's CRI socket: `hack/test-cri.sh` uses them.
#
#   hack/build-cri-tools.sh [OUTDIR]     (default: _output/tools)
#
# critest is a Go test binary (`go test -c`); run it with --runtime-endpoint and
# ginkgo flags. Nothing is rebuilt while both binaries are newer than hack/tools/go.sum
# (FORCE=1 rebuilds). The modules come from the Go module proxy, or the module cache.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-${REPO_ROOT}/_output/tools}
if [[ ${out} != /* ]]; then
  out="${PWD}/${out}"
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: 'go' not found in PATH; install Go (see hack/tools/go.mod for the version) and re-run $0" >&2
  exit 1
fi

sum=${REPO_ROOT}/hack/tools/go.sum
if [[ ${FORCE:-0} != 1 && ${out}/crictl -nt ${sum} && ${out}/critest -nt ${sum} ]]; then
  exit 0
fi

cd "${REPO_ROOT}/hack/tools"
version=$(go list -m -f '{{.Version}}' sigs.k8s.io/cri-tools)
ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${version}"
mkdir -p "${out}"
# Build into temporary names and rename, so an interrupted build never leaves a
# binary that looks up to date.
go build -trimpath -ldflags "${ldflags}" -o "${out}/.crictl.tmp" sigs.k8s.io/cri-tools/cmd/crictl
go test -c -trimpath -ldflags "${ldflags}" -o "${out}/.critest.tmp" sigs.k8s.io/cri-tools/cmd/critest
mv -f "${out}/.crictl.tmp" "${out}/crictl"
mv -f "${out}/.critest.tmp" "${out}/critest"
echo "built crictl and critest ${version} in ${out}"
