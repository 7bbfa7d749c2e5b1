#!/usr/bin/env bash
# Fails when a Go file is not gofmt'ed. Fix with: gofmt -w $(git ls-files '*.go')
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bad=$(gofmt -l $(git ls-files --cached --others --exclude-standard '*.go'))
if [[ -n ${bad} ]]; then
  echo "these files are not gofmt'ed:" >&2
  echo "${bad}" >&2
  echo "run: gofmt -w ${bad//$'\n'/ }" >&2
  exit 1
fi
