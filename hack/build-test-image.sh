#!/usr/bin/env bash
# Builds the busybox test image as an OCI image archive (with a docker-style
# manifest.json too), reproducibly, from Debian's busybox-static binary.
#
#   hack/build-test-image.sh OUT.tar
#
# See hack/testimage/main.go for what the image contains.
set -euo pipefail

if [[ $# -ne 1 || -z $1 ]]; then
  echo "usage: $0 OUT.tar" >&2
  echo "  writes an OCI image archive of localhost/busybox:latest to OUT.tar" >&2
  exit 2
fi

# Resolve OUT before changing directory, so relative paths mean what the caller meant.
out=$1
if [[ ${out} != /* ]]; then
  out="${PWD}/${out}"
fi

if [[ ! -e /bin/busybox ]]; then
  echo "error: /bin/busybox not found; install it with:" >&2
  echo "  sudo hack/install-deps.sh    (or: sudo apt-get install -y busybox-static)" >&2
  exit 1
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: 'go' not found in PATH; install Go (see go.mod for the version) and re-run $0" >&2
  exit 1
fi

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${REPO_ROOT}"
exec go run ./hack/testimage -o "${out}"
