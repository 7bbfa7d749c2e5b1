#!/usr/bin/env bash
# Runs agentd in the foreground on the example pods, with all state under one folder
# (default ./_run): `make run`. Stop it with Ctrl-C (its pods stop with it; live
# restore is off in this configuration).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$PWD
dir=${1:-$top/_run}
if [[ $(id -u) -ne 0 ]]; then
  echo "error: agentd creates namespaces, cgroups and mounts: run 'make run' as root" >&2
  exit 1
fi
for b in agentd agentctl agent-monitor agent-monitor-lean agent-etcd; do
  [[ -x bin/$b ]] || { echo "error: bin/$b is missing: run 'make build'" >&2; exit 1; }
done
[[ -f _output/busybox.tar ]] || { echo "error: _output/busybox.tar is missing: run 'make image'" >&2; exit 1; }

mkdir -p "$dir"/{root,run,logs,manifests}
chmod 0755 "$dir/manifests"
# agentd refuses manifests anyone but root could have written (like sshd's StrictModes),
# so the examples are copied into a root-owned folder; edit or add pods there.
install -m 0644 manifests/examples/*.yaml "$dir/manifests/"
cat > "$dir/config.json" <<JSON
{
  "manifest-dir": "$dir/manifests",
  "root": "$dir/root",
  "run-dir": "$dir/run",
  "log-dir": "$dir/logs",
  "live-restore": false
}
JSON
bin/agentctl --root "$dir/root" image import _output/busybox.tar

cat <<MSG

agentd starts on the example pods in $dir/manifests (add, edit or remove files there).
From another terminal:
  export AGENT_SOCKET=$dir/run/agent.sock
  $top/bin/agentctl get pods
  $top/bin/agentctl logs -f logger
  $top/bin/agentctl describe pod httpd
  $top/bin/agentctl get events

MSG
exec bin/agentd --config-file "$dir/config.json"
