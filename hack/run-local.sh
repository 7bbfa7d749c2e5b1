#!/usr/bin/env bash
# Runs agentd in the foreground on manifests/examples with all state under one folder
# (default ./_run): make run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=${1:-$PWD/_run}
mkdir -p "${dir}"
if [[ $(id -u) -ne 0 ]]; then
  echo "error: agentd creates namespaces and cgroups: run 'make run' as root" >&2
  exit 1
fi
exec bin/agentd
