#!/usr/bin/env bash
# Benchmarks agentd's registry pull (package agent/image/pull) against DESIGN.md's
# target, registry pull >= 1.0x `skopeo copy`, with the yardstick measured in the
# same run: a ~200 MiB image of 8 gzip layers on go-containerregistry's registry on
# a loopback port, pulled by agentd's puller into an image store (download, verify,
# unpack, sync, commit) and by `skopeo copy docker://... dir:...` when skopeo is
# installed, else by crane.Pull + an OCI layout write (blobs to disk, verified),
# alternating, each into a fresh directory under /var/tmp. It prints MiB/s of each
# (compressed bytes over wall time, median of -reps), the ratio and the target.
# No root needed; nothing is left behind.
#
#   hack/bench-pull.sh [flags of hack/benchpull, e.g. -size 200 -layers 8 -reps 3 -cpuprofile /tmp/pull.prof]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=hack/lib-bench.sh
source hack/lib-bench.sh
bench_require_go

exec go run ./hack/benchpull "$@"
